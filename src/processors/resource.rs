//! The `resource` processor: insert, update, upsert or delete resource
//! attributes, like the Collector's (its `attributes` actions on the
//! resource), applied at the wire level by
//! [`crate::proto::rewrite::rewrite_resources`].

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::config::processors::env_reference;
use crate::config::{ActionKind, AttributeValue, ResourceProcessorConfig};

/// A `resource` processor ready to run: `${env:…}` values read.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceProcessor {
    actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq)]
struct Action {
    key: String,
    kind: ActionKind,
    source: Source,
}

#[derive(Debug, Clone, PartialEq)]
enum Source {
    Value(AnyValue),
    From(String),
    /// `delete`.
    Nothing,
}

impl ResourceProcessor {
    /// Builds the processor, reading the environment variables its values
    /// name.
    ///
    /// # Errors
    /// The attribute whose `${env:NAME}` is not set (the configuration check
    /// reports it first; this is for a variable gone since).
    pub fn new(config: &ResourceProcessorConfig) -> Result<Self, String> {
        let actions = config
            .attributes
            .iter()
            .map(|a| {
                let source = match (&a.value, &a.from_attribute) {
                    (Some(v), _) => Source::Value(literal(v)?),
                    (None, Some(from)) => Source::From(from.clone()),
                    (None, None) => Source::Nothing,
                };
                Ok(Action {
                    key: a.key.clone(),
                    kind: a.action,
                    source,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { actions })
    }

    /// Applies the actions in order.
    pub fn apply(&self, resource: &mut Resource) {
        let attrs = &mut resource.attributes;
        for a in &self.actions {
            if a.kind == ActionKind::Delete {
                attrs.retain(|kv| kv.key != a.key);
                continue;
            }
            let value = match &a.source {
                Source::Value(v) => v.clone(),
                Source::From(from) => match attrs.iter().find(|kv| kv.key == *from) {
                    Some(kv) => kv.value.clone().unwrap_or_default(),
                    None => continue,
                },
                Source::Nothing => continue,
            };
            match (attrs.iter_mut().find(|kv| kv.key == a.key), a.kind) {
                (Some(kv), ActionKind::Update | ActionKind::Upsert) => kv.value = Some(value),
                (None, ActionKind::Insert | ActionKind::Upsert) => attrs.push(KeyValue {
                    key: a.key.clone(),
                    value: Some(value),
                    ..KeyValue::default()
                }),
                _ => {}
            }
        }
    }
}

fn literal(v: &AttributeValue) -> Result<AnyValue, String> {
    let value = match v {
        AttributeValue::Bool(b) => any_value::Value::BoolValue(*b),
        AttributeValue::Int(i) => any_value::Value::IntValue(*i),
        AttributeValue::Double(d) => any_value::Value::DoubleValue(*d),
        AttributeValue::String(s) => match env_reference(s) {
            Some(name) => any_value::Value::StringValue(
                std::env::var(name)
                    .map_err(|_| format!("the environment variable {name} is not set"))?,
            ),
            None => any_value::Value::StringValue(s.clone()),
        },
    };
    Ok(AnyValue { value: Some(value) })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::ResourceAction;

    fn s(v: &str) -> Option<AttributeValue> {
        Some(AttributeValue::String(v.to_owned()))
    }

    fn attrs(r: &Resource) -> Vec<(String, String)> {
        r.attributes
            .iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    Some(any_value::Value::IntValue(i)) => i.to_string(),
                    Some(any_value::Value::BoolValue(b)) => b.to_string(),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect()
    }

    fn resource(pairs: &[(&str, &str)]) -> Resource {
        Resource {
            attributes: pairs
                .iter()
                .map(|(k, v)| KeyValue {
                    key: (*k).to_owned(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue((*v).to_owned())),
                    }),
                    ..KeyValue::default()
                })
                .collect(),
            ..Resource::default()
        }
    }

    fn run(actions: Vec<ResourceAction>, before: &[(&str, &str)]) -> Vec<(String, String)> {
        let p = ResourceProcessor::new(&ResourceProcessorConfig {
            attributes: actions,
        })
        .unwrap();
        let mut r = resource(before);
        p.apply(&mut r);
        attrs(&r)
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn each_action_as_the_collector_does_it() {
        let has = [("env", "dev"), ("team", "a")];
        for (a, want) in [
            (ActionKind::Insert, pairs(&[("env", "dev"), ("team", "a")])),
            (ActionKind::Update, pairs(&[("env", "prod"), ("team", "a")])),
            (ActionKind::Upsert, pairs(&[("env", "prod"), ("team", "a")])),
        ] {
            assert_eq!(
                run(vec![ResourceAction::new("env", a, s("prod"))], &has),
                want,
                "{a:?}"
            );
        }
        let lacks = [("team", "a")];
        for (a, want) in [
            (ActionKind::Insert, pairs(&[("team", "a"), ("env", "prod")])),
            (ActionKind::Update, pairs(&[("team", "a")])),
            (ActionKind::Upsert, pairs(&[("team", "a"), ("env", "prod")])),
        ] {
            assert_eq!(
                run(vec![ResourceAction::new("env", a, s("prod"))], &lacks),
                want,
                "{a:?}"
            );
        }
        assert_eq!(
            run(
                vec![ResourceAction::new("env", ActionKind::Delete, None)],
                &has
            ),
            pairs(&[("team", "a")])
        );
    }

    #[test]
    fn typed_values_env_and_from_attribute() {
        // Any variable every process has will do.
        let path = std::env::var("PATH").unwrap();
        let mut from = ResourceAction::new("k8s.namespace.name", ActionKind::Upsert, None);
        from.from_attribute = Some("tenant".to_owned());
        let got = run(
            vec![
                ResourceAction::new("k8s.node.name", ActionKind::Insert, s("${env:PATH}")),
                ResourceAction::new("replicas", ActionKind::Insert, Some(AttributeValue::Int(3))),
                ResourceAction::new(
                    "canary",
                    ActionKind::Insert,
                    Some(AttributeValue::Bool(true)),
                ),
                from,
            ],
            &[("tenant", "shoot--p--a")],
        );
        assert_eq!(
            got,
            pairs(&[
                ("tenant", "shoot--p--a"),
                ("k8s.node.name", path.as_str()),
                ("replicas", "3"),
                ("canary", "true"),
                ("k8s.namespace.name", "shoot--p--a"),
            ])
        );
        let err = ResourceProcessor::new(&ResourceProcessorConfig {
            attributes: vec![ResourceAction::new(
                "x",
                ActionKind::Insert,
                s("${env:SEEDGATE_TEST_UNSET_VAR}"),
            )],
        })
        .unwrap_err();
        assert!(err.contains("SEEDGATE_TEST_UNSET_VAR"), "{err}");
    }
}
