//! Finds the line of a field path (`pipelines[1].output.endpoint`) in YAML
//! text, so configuration problems found after parsing can still point at a
//! line. It walks the parser's events, nothing more: the text was already
//! parsed successfully by serde, so any parser error here just means "no line".

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser};

/// Field path → 1-based line of its key (or of the sequence item).
#[derive(Debug, Default)]
pub(crate) struct LineIndex(HashMap<String, u64>);

impl LineIndex {
    /// The line of `field`, or of its nearest ancestor that is in the file
    /// (a missing field is reported at the block that should hold it).
    pub(crate) fn line_of(&self, field: &str) -> Option<u64> {
        let mut path = field;
        loop {
            if let Some(line) = self.0.get(path) {
                return Some(*line);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

/// Builds the index; stops quietly at the first parser error.
pub(crate) fn index(text: &str) -> LineIndex {
    let mut out = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { break };
        let line = span.start.line() as u64;
        // The path of the node this event starts, when it is a value.
        let node_path =
            |stack: &mut Vec<Frame>, out: &mut HashMap<String, u64>| -> Option<String> {
                match stack.last_mut() {
                    None => Some(String::new()),
                    Some(Frame::Map { path, key }) => key.take().map(|k| join(path, &k)),
                    Some(Frame::Seq { path, next }) => {
                        let p = format!("{path}[{next}]");
                        *next += 1;
                        out.entry(p.clone()).or_insert(line);
                        Some(p)
                    }
                }
            };
        match event {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { path, key }) = stack.last_mut()
                    && key.is_none()
                {
                    let p = join(path, &value);
                    out.entry(p).or_insert(line);
                    *key = Some(value.into_owned());
                } else {
                    let _ = node_path(&mut stack, &mut out);
                }
            }
            Event::MappingStart(..) => {
                let path = node_path(&mut stack, &mut out).unwrap_or_default();
                stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = node_path(&mut stack, &mut out).unwrap_or_default();
                stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            Event::Alias(..) => {
                let _ = node_path(&mut stack, &mut out);
            }
            _ => {}
        }
    }
    LineIndex(out)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_sequence_items() {
        let idx =
            index("a:\n  b: 1\nlist:\n  - name: x\n  - name: y\n    deep:\n      k: [1, 2]\n");
        assert_eq!(idx.line_of("a.b"), Some(2));
        assert_eq!(idx.line_of("list[1].name"), Some(5));
        assert_eq!(idx.line_of("list[1].deep.k"), Some(7));
        assert_eq!(idx.line_of("list[1].missing"), Some(5));
        assert_eq!(idx.line_of("nothing"), None);
    }
}
