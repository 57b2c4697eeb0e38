//! What the API server does with a custom resource against its CRD's
//! structural schema before storing it: prune unknown fields, apply
//! `default`s, validate (OpenAPI: types, `nullable`, `required`, `enum`,
//! `pattern`, min/max length, items and bounds), then evaluate the
//! `x-kubernetes-validations` CEL rules, in apiextensions-apiserver's order
//! and with its error texts.
//!
//! Not modelled: `format`, `multipleOf`, `uniqueItems`, `minProperties`/
//! `maxProperties`, `allOf`/`anyOf`/`oneOf`/`not`, `x-kubernetes-list-type`
//! (set/map uniqueness and map-keyed `oldSelf` correlation of list items),
//! `messageExpression`, `optionalOldSelf`, the CEL cost budget, Kubernetes'
//! CEL libraries beyond `isURL` (quantity, IP, CIDR, semver, format), and CEL
//! type checking at CRD creation (a rule that does not compile is reported
//! when an object meets it, not when the CRD is created).

use std::sync::Arc;

use cel::{Context, Program};
use serde_json::{Map, Value};

/// One `details.causes` entry of a 422 `Invalid` answer.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Cause {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

const REQUIRED: &str = "FieldValueRequired";
const INVALID: &str = "FieldValueInvalid";
const NOT_SUPPORTED: &str = "FieldValueNotSupported";
const TOO_LONG: &str = "FieldValueTooLong";
const TOO_MANY: &str = "FieldValueTooMany";
const TYPE_INVALID: &str = "FieldValueTypeInvalid";

/// apiextensions-apiserver skips the CEL rules when the OpenAPI check found
/// one of these, and says so in an extra cause.
const BLOCKING: [&str; 5] = [NOT_SUPPORTED, REQUIRED, TOO_LONG, TOO_MANY, TYPE_INVALID];
const RULES_NOT_CHECKED: &str = "Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

/// The root fields the API server handles itself, not through the schema.
const TYPE_META: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Drops the fields `schema` does not declare (unless it preserves unknown
/// fields) and returns their paths, as `fieldValidation=Strict` names them.
/// Also drops explicit `null`s of fields that are neither `nullable` nor
/// defaulted (apiextensions' `PruneNonNullableNullsWithoutDefaults`), so
/// `otlp: null` is a missing `otlp`.
pub(super) fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    if let Some(map) = obj.as_object_mut() {
        prune_object(schema, map, "", &mut unknown, true);
    }
    unknown
}

fn prune_object(
    schema: &Value,
    map: &mut Map<String, Value>,
    path: &str,
    unknown: &mut Vec<String>,
    root: bool,
) {
    if schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true) {
        return;
    }
    let props = schema["properties"].as_object();
    let additional = schema.get("additionalProperties");
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        if root && TYPE_META.contains(&key.as_str()) {
            continue;
        }
        let child_path = join(path, &key);
        let child_schema = match (props.and_then(|p| p.get(&key)), additional) {
            (Some(s), _) => s,
            (None, Some(a)) if a.is_object() => a,
            (None, Some(Value::Bool(true))) => continue,
            _ => {
                map.remove(&key);
                unknown.push(child_path);
                continue;
            }
        };
        let null_pruned = map.get(&key).is_some_and(Value::is_null)
            && child_schema["nullable"] != Value::Bool(true)
            && child_schema.get("default").is_none();
        if null_pruned {
            map.remove(&key);
        } else if let Some(child) = map.get_mut(&key) {
            prune_value(child_schema, child, &child_path, unknown);
        }
    }
}

fn prune_value(schema: &Value, value: &mut Value, path: &str, unknown: &mut Vec<String>) {
    match value {
        Value::Object(map) => prune_object(schema, map, path, unknown, false),
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                prune_value(&schema["items"], item, &format!("{path}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

/// Fills in the `default` of every absent property whose parent is present.
pub(super) fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (key, prop) in props {
                    if let Some(default) = prop.get("default")
                        && !map.contains_key(key)
                    {
                        map.insert(key.clone(), default.clone());
                    }
                }
                for (key, child) in map.iter_mut() {
                    if let Some(prop) = props.get(key) {
                        apply_defaults(prop, child);
                    }
                }
            } else if let Some(additional) = schema.get("additionalProperties")
                && additional.is_object()
            {
                for child in map.values_mut() {
                    apply_defaults(additional, child);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                apply_defaults(&schema["items"], item);
            }
        }
        _ => {}
    }
}

/// Every cause the API server would give for `obj` (pruned and defaulted)
/// against `schema`; `old` is the stored object of an update (for
/// transition rules that use `oldSelf`).
pub(super) fn validate(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let root_props: Vec<(&String, &Value)> = schema["properties"]
        .as_object()
        .map(|p| {
            p.iter()
                .filter(|(k, _)| !TYPE_META.contains(&k.as_str()))
                .collect()
        })
        .unwrap_or_default();
    for req in schema["required"].as_array().into_iter().flatten() {
        if let Some(req) = req.as_str()
            && !TYPE_META.contains(&req)
            && obj.get(req).is_none()
        {
            causes.push(required(req));
        }
    }
    for (key, prop) in &root_props {
        if let Some(child) = obj.get(key.as_str()) {
            openapi(prop, child, key, &mut causes);
        }
    }
    if causes.iter().any(|c| BLOCKING.contains(&c.reason)) {
        causes.push(Cause {
            reason: INVALID,
            field: "<nil>".into(),
            message: RULES_NOT_CHECKED.into(),
        });
        return causes;
    }
    for (key, prop) in &root_props {
        if let Some(child) = obj.get(key.as_str()) {
            let old_child = old.and_then(|o| o.get(key.as_str()));
            rules(prop, child, old_child, key, &mut causes);
        }
    }
    causes
}

// === OpenAPI ===

fn openapi(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    if value.is_null() {
        if schema["nullable"] != Value::Bool(true) && schema.get("type").is_some() {
            causes.push(type_invalid(path, schema, value));
        }
        return;
    }
    if let Some(ty) = schema["type"].as_str()
        && !has_type(value, ty)
        && schema["x-kubernetes-int-or-string"] != Value::Bool(true)
    {
        causes.push(type_invalid(path, schema, value));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(go_repr).collect();
        causes.push(Cause {
            reason: NOT_SUPPORTED,
            field: path.into(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                go_repr(value),
                list.join(", ")
            ),
        });
    }
    match value {
        Value::String(s) => string_checks(schema, s, value, path, causes),
        Value::Number(n) => number_checks(schema, n.as_f64().unwrap_or(0.0), value, path, causes),
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(max) = schema["maxItems"].as_u64()
                && n > max
            {
                causes.push(Cause {
                    reason: TOO_MANY,
                    field: path.into(),
                    message: format!("Too many: {n}: must have at most {max} items"),
                });
            }
            if let Some(min) = schema["minItems"].as_u64()
                && n < min
            {
                causes.push(invalid_value(
                    path,
                    value,
                    &format!("should have at least {min} items"),
                ));
            }
            for (i, item) in items.iter().enumerate() {
                openapi(&schema["items"], item, &format!("{path}[{i}]"), causes);
            }
        }
        Value::Object(map) => {
            for req in schema["required"].as_array().into_iter().flatten() {
                if let Some(req) = req.as_str()
                    && !map.contains_key(req)
                {
                    causes.push(required(&join(path, req)));
                }
            }
            for (_, prop, child, child_path) in children(schema, map, path) {
                openapi(prop, child, &child_path, causes);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

fn string_checks(schema: &Value, s: &str, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let len = s.chars().count() as u64;
    if let Some(max) = schema["maxLength"].as_u64()
        && len > max
    {
        causes.push(Cause {
            reason: TOO_LONG,
            field: path.into(),
            message: format!("Too long: may not be more than {max} bytes"),
        });
    }
    if let Some(min) = schema["minLength"].as_u64()
        && len < min
    {
        causes.push(invalid_value(
            path,
            value,
            &format!("should be at least {min} chars long"),
        ));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        let matches = regex::Regex::new(pattern).is_ok_and(|re| re.is_match(s));
        if !matches {
            causes.push(invalid_value(
                path,
                value,
                &format!("should match '{pattern}'"),
            ));
        }
    }
}

fn number_checks(schema: &Value, n: f64, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    if let Some(min) = schema["minimum"].as_f64()
        && n < min
    {
        causes.push(invalid_value(
            path,
            value,
            &format!("should be greater than or equal to {min}"),
        ));
    }
    if let Some(max) = schema["maximum"].as_f64()
        && n > max
    {
        causes.push(invalid_value(
            path,
            value,
            &format!("should be less than or equal to {max}"),
        ));
    }
}

fn has_type(value: &Value, ty: &str) -> bool {
    match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        _ => true,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value as Go's `%#v` prints it in field errors: strings quoted, numbers
/// and booleans bare, composites by their type name.
fn go_repr(value: &Value) -> String {
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => value.to_string(),
        other => format!("\"{}\"", json_type(other)),
    }
}

fn required(field: &str) -> Cause {
    Cause {
        reason: REQUIRED,
        field: field.into(),
        message: "Required value".into(),
    }
}

fn type_invalid(path: &str, schema: &Value, value: &Value) -> Cause {
    let actual = json_type(value);
    Cause {
        reason: TYPE_INVALID,
        field: path.into(),
        message: format!(
            "Invalid value: \"{actual}\": {path} in body must be of type {}: \"{actual}\"",
            schema["type"].as_str().unwrap_or_default()
        ),
    }
}

/// kube-openapi's errors: the value, then the path and what is wrong.
fn invalid_value(path: &str, value: &Value, what: &str) -> Cause {
    Cause {
        reason: INVALID,
        field: path.into(),
        message: format!("Invalid value: {}: {path} in body {what}", go_repr(value)),
    }
}

/// The fields of an object with their schemas and paths: declared
/// properties (`a.b`), and map entries of `additionalProperties` (`a[key]`);
/// undeclared fields (already pruned, or preserved) are skipped.
fn children<'a>(
    schema: &'a Value,
    map: &'a Map<String, Value>,
    path: &'a str,
) -> impl Iterator<Item = (&'a String, &'a Value, &'a Value, String)> + 'a {
    let props = schema["properties"].as_object();
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    map.iter()
        .filter_map(move |(key, child)| match props.and_then(|p| p.get(key)) {
            Some(prop) => Some((key, prop, child, join(path, key))),
            None => additional.map(|a| (key, a, child, format!("{path}[{key}]"))),
        })
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

// === CEL ===

fn rules(schema: &Value, value: &Value, old: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    if value.is_null() {
        return;
    }
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(cause) = check_rule(rule, schema, value, old, path) {
            causes.push(cause);
        }
    }
    match value {
        Value::Object(map) => {
            for (key, prop, child, child_path) in children(schema, map, path) {
                let old_child = old.and_then(|o| o.get(key));
                rules(prop, child, old_child, &child_path, causes);
            }
        }
        Value::Array(items) => {
            // Plain (atomic) lists: no oldSelf correlation of items.
            for (i, item) in items.iter().enumerate() {
                rules(
                    &schema["items"],
                    item,
                    None,
                    &format!("{path}[{i}]"),
                    causes,
                );
            }
        }
        _ => {}
    }
}

/// Evaluates one rule; `None` when it holds (or is a transition rule on a
/// create). A rule that fails to compile or evaluate is a cause too, as on
/// a real API server.
fn check_rule(
    rule: &Value,
    schema: &Value,
    value: &Value,
    old: Option<&Value>,
    path: &str,
) -> Option<Cause> {
    let text = rule["rule"].as_str()?;
    let uses_old = text.contains("oldSelf");
    if uses_old && old.is_none() {
        return None;
    }
    let field = match rule["fieldPath"].as_str() {
        Some(fp) => format!("{path}{fp}"),
        None => path.to_string(),
    };
    let ty = schema["type"].as_str().unwrap_or("object");
    let fail = |what: String| Cause {
        reason: rule["reason"].as_str().map_or(INVALID, reason_of),
        field: field.clone(),
        message: format!("Invalid value: \"{ty}\": {what}"),
    };
    let outcome = evaluate(text, value, old);
    match outcome {
        Ok(true) => None,
        Ok(false) => Some(fail(
            rule["message"]
                .as_str()
                .map_or_else(|| format!("failed rule: {text}"), str::to_string),
        )),
        Err(e) => Some(fail(format!("{e} evaluating rule: {text}"))),
    }
}

fn reason_of(reason: &str) -> &'static str {
    match reason {
        "FieldValueRequired" => REQUIRED,
        "FieldValueDuplicate" => "FieldValueDuplicate",
        "FieldValueForbidden" => "FieldValueForbidden",
        _ => INVALID,
    }
}

fn evaluate(rule: &str, value: &Value, old: Option<&Value>) -> Result<bool, String> {
    let program = Program::compile(rule).map_err(|e| format!("compilation failed: {e}"))?;
    let mut ctx = Context::default();
    ctx.add_variable("self", value.clone())
        .map_err(|e| e.to_string())?;
    if let Some(old) = old {
        ctx.add_variable("oldSelf", old.clone())
            .map_err(|e| e.to_string())?;
    }
    ctx.add_function("isURL", |s: Arc<String>| is_url(&s))
        .map_err(|e| e.to_string())?;
    match program.execute(&ctx) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("rule did not evaluate to a bool: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Kubernetes' `isURL`: Go's `url.ParseRequestURI` succeeds, i.e. an
/// absolute URI (with a scheme) or an absolute path.
fn is_url(s: &str) -> bool {
    static SCHEME: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s]*$").expect("valid regex")
    });
    (s.starts_with('/') && !s.contains(char::is_whitespace)) || SCHEME.is_match(s)
}
