use super::*;

/// A length-delimited field `number` holding `payload`.
fn len(number: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

fn varint(number: u32, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(number, prost::encoding::WireType::Varint, &mut out);
    prost::encoding::encode_varint(v, &mut out);
    out
}

fn string_attr(key: &str, value: &[u8]) -> Vec<u8> {
    [len(1, key.as_bytes()), len(2, &len(1, value))].concat()
}

fn int_attr(key: &str, value: u64) -> Vec<u8> {
    [len(1, key.as_bytes()), len(2, &varint(3, value))].concat()
}

/// A ResourceLogs block with the given attributes and `records` records.
fn logs_block(attrs: &[Vec<u8>], records: usize) -> Vec<u8> {
    let resource: Vec<u8> = attrs.iter().flat_map(|a| len(1, a)).collect();
    let scope: Vec<u8> = (0..records).flat_map(|_| len(2, &[])).collect();
    len(1, &[len(1, &resource), len(2, &scope)].concat())
}

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn logs(buf: &[u8]) -> Result<Vec<Block<'_>>, ScanError> {
    scan(Signal::Logs, buf, &keys(&["k8s.namespace.name"]))
}

#[test]
fn malformed_inputs_give_the_right_error() {
    let mut over = vec![0x0a];
    over.extend([0xff; 10]);
    let cases: Vec<(&str, Vec<u8>, ScanError)> = vec![
        (
            "tag without length",
            vec![0x0a],
            ScanError::Truncated { offset: 1 },
        ),
        (
            "length varint cut short",
            vec![0x0a, 0x80],
            ScanError::Truncated { offset: 1 },
        ),
        (
            "length varint overflow",
            over,
            ScanError::VarintOverflow { offset: 1 },
        ),
        (
            "length past the end",
            vec![0x0a, 0x05, 0x00],
            ScanError::LengthOutOfBounds {
                offset: 1,
                len: 5,
                available: 1,
            },
        ),
        (
            "inner length past its parent",
            // block of 3 bytes whose scope field claims 4
            [vec![0x0a, 0x03, 0x12, 0x04, 0x00], vec![0; 4]].concat(),
            ScanError::LengthOutOfBounds {
                offset: 3,
                len: 4,
                available: 1,
            },
        ),
        (
            "top-level field 1 as varint",
            vec![0x08, 0x01],
            ScanError::WrongWireType {
                offset: 0,
                field: "ExportLogsServiceRequest.resource_logs",
                expected: wire::LEN,
                actual: wire::VARINT,
            },
        ),
        (
            "scope_logs as fixed32",
            len(1, &[0x15, 0, 0, 0, 0]),
            ScanError::WrongWireType {
                offset: 2,
                field: "ResourceLogs.scope_logs",
                expected: wire::LEN,
                actual: wire::I32,
            },
        ),
        (
            "fixed64 cut short",
            len(1, &[0x21, 0, 0]),
            ScanError::Truncated { offset: 3 },
        ),
        (
            "start group",
            vec![0x0b],
            ScanError::Group {
                offset: 0,
                number: 1,
            },
        ),
        (
            "end group",
            vec![0x14],
            ScanError::Group {
                offset: 0,
                number: 2,
            },
        ),
        (
            "wire type 6",
            vec![0x0e],
            ScanError::InvalidWireType {
                offset: 0,
                wire_type: 6,
            },
        ),
        (
            "field number 0",
            vec![0x02, 0x00],
            ScanError::InvalidTag { offset: 0, key: 2 },
        ),
        (
            "key wider than 32 bits",
            vec![0x82, 0x80, 0x80, 0x80, 0x80, 0x01],
            ScanError::InvalidTag {
                offset: 0,
                key: 1 << 35 | 2,
            },
        ),
        (
            "routing value not UTF-8",
            logs_block(&[string_attr("k8s.namespace.name", &[0xff, 0xfe])], 1),
            // block tag+len, resource tag+len, attr tag+len, key (2+18),
            // value tag+len, string tag+len
            ScanError::InvalidUtf8 {
                offset: 2 + 2 + 2 + 20 + 2 + 2,
                field: "AnyValue.string_value",
            },
        ),
    ];
    for (name, buf, want) in cases {
        assert_eq!(logs(&buf), Err(want), "{name}");
        assert_eq!(count_records(Signal::Logs, &buf), Err(want), "{name}");
    }
}

#[test]
fn every_error_has_a_distinct_kind_and_its_offset() {
    let errors = [
        ScanError::Truncated { offset: 1 },
        ScanError::VarintOverflow { offset: 2 },
        ScanError::LengthOutOfBounds {
            offset: 3,
            len: 0,
            available: 0,
        },
        ScanError::InvalidTag { offset: 4, key: 0 },
        ScanError::InvalidWireType {
            offset: 5,
            wire_type: 6,
        },
        ScanError::Group {
            offset: 6,
            number: 1,
        },
        ScanError::WrongWireType {
            offset: 7,
            field: "f",
            expected: 2,
            actual: 0,
        },
        ScanError::InvalidUtf8 {
            offset: 8,
            field: "f",
        },
        ScanError::CountOverflow { offset: 9 },
        ScanError::InvalidIdLength {
            offset: 10,
            field: "f",
            expected: 16,
            actual: 3,
        },
        ScanError::ValueTooDeep {
            offset: 11,
            limit: 16,
        },
    ];
    let mut kinds: Vec<_> = errors.iter().map(ScanError::kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds.len(), errors.len());
    for (i, e) in errors.iter().enumerate() {
        assert_eq!(e.offset(), i + 1);
        assert!(e.to_string().contains(&format!("byte {}", i + 1)), "{e}");
    }
}

#[test]
fn empty_request_has_no_blocks() {
    assert_eq!(logs(&[]), Ok(vec![]));
    assert_eq!(count_records(Signal::Traces, &[]), Ok(0));
}

#[test]
fn unknown_top_level_fields_are_skipped_and_not_covered() {
    let a = logs_block(&[string_attr("k8s.namespace.name", b"a")], 2);
    let unknown = [varint(7, 1), len(9, b"junk")].concat();
    let buf = [unknown.clone(), a.clone()].concat();
    let blocks = logs(&buf).unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].range, unknown.len()..buf.len());
    assert_eq!((blocks[0].records, blocks[0].key), (2, Some("a")));
}

#[test]
fn key_follows_keys_priority_not_attribute_order() {
    let k = keys(&["first", "second"]);
    let block = logs_block(
        &[string_attr("second", b"2"), string_attr("first", b"1")],
        0,
    );
    assert_eq!(scan(Signal::Logs, &block, &k).unwrap()[0].key, Some("1"));
    // A non-string value of the preferred name does not count.
    let block = logs_block(&[int_attr("first", 1), string_attr("second", b"2")], 0);
    assert_eq!(scan(Signal::Logs, &block, &k).unwrap()[0].key, Some("2"));
    // ... but a later string attribute of that name does.
    let block = logs_block(
        &[
            int_attr("first", 1),
            string_attr("second", b"2"),
            string_attr("first", b"1"),
        ],
        0,
    );
    assert_eq!(scan(Signal::Logs, &block, &k).unwrap()[0].key, Some("1"));
    let block = logs_block(&[string_attr("other", b"x")], 0);
    assert_eq!(scan(Signal::Logs, &block, &k).unwrap()[0].key, None);
    assert_eq!(scan(Signal::Logs, &block, &[]).unwrap()[0].key, None);
}

#[test]
fn repeated_singular_fields_follow_prost_merge_rules() {
    // KeyValue.value twice: string then int → int wins (not a key).
    let kv = [len(1, b"ns"), len(2, &len(1, b"a")), len(2, &varint(3, 5))].concat();
    let block = len(1, &len(1, &len(1, &kv)));
    assert_eq!(
        scan(Signal::Logs, &block, &keys(&["ns"])).unwrap()[0].key,
        None
    );
    // int then an empty AnyValue: still int. string then empty: string.
    let kv = [len(1, b"ns"), len(2, &len(1, b"a")), len(2, &[])].concat();
    let block = len(1, &len(1, &len(1, &kv)));
    assert_eq!(
        scan(Signal::Logs, &block, &keys(&["ns"])).unwrap()[0].key,
        Some("a")
    );
    // Resource twice: attributes merge.
    let block = len(
        1,
        &[
            len(1, &len(1, &string_attr("x", b"1"))),
            len(1, &len(1, &string_attr("ns", b"b"))),
        ]
        .concat(),
    );
    assert_eq!(
        scan(Signal::Logs, &block, &keys(&["ns"])).unwrap()[0].key,
        Some("b")
    );
}

/// A ResourceMetrics block with one scope holding `metrics`.
fn metrics_block(metrics: &[Vec<u8>]) -> Vec<u8> {
    let scope: Vec<u8> = metrics.iter().flat_map(|m| len(2, m)).collect();
    len(1, &len(2, &scope))
}

fn points(field: u32, n: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..n)
        .flat_map(|_| len(1, &[0x11, 0, 0, 0, 0, 0, 0, 0, 0]))
        .collect();
    len(field, &data)
}

#[test]
fn metric_data_points_by_type() {
    let name = len(1, b"m");
    let block = metrics_block(&[
        [name.clone(), points(5, 1)].concat(),     // gauge
        [name.clone(), points(7, 2)].concat(),     // sum
        [name.clone(), points(9, 3)].concat(),     // histogram
        [name.clone(), points(10, 4)].concat(),    // exponential histogram
        [name.clone(), points(11, 5)].concat(),    // summary
        name.clone(),                              // no data
        [name.clone(), len(13, &[1, 2])].concat(), // unknown field only
    ]);
    let blocks = scan(Signal::Metrics, &block, &[]).unwrap();
    assert_eq!(blocks[0].records, 15);
    // The oneof keeps its last member; the same member twice merges.
    let block = metrics_block(&[
        [points(5, 3), points(7, 2)].concat(),
        [points(7, 2), points(7, 1)].concat(),
        [points(7, 2), points(5, 4), points(7, 1)].concat(),
    ]);
    assert_eq!(count_records(Signal::Metrics, &block), Ok(2 + 3 + 1));
}

#[test]
fn sum_fields_are_type_checked() {
    // is_monotonic (3) as LEN inside a Sum
    let block = metrics_block(&[len(7, &len(3, &[]))]);
    assert!(matches!(
        count_records(Signal::Metrics, &block),
        Err(ScanError::WrongWireType {
            field: "Sum.is_monotonic",
            ..
        })
    ));
    // field 3 of a Gauge is unknown and skipped
    let block = metrics_block(&[len(5, &len(3, &[]))]);
    assert_eq!(count_records(Signal::Metrics, &block), Ok(0));
}

#[test]
fn concat_keeps_selected_blocks_in_order() {
    let a = logs_block(&[string_attr("k8s.namespace.name", b"a")], 1);
    let b = logs_block(&[string_attr("k8s.namespace.name", b"b")], 2);
    let c = logs_block(&[], 3);
    let buf = [a.clone(), b, c.clone()].concat();
    let blocks = logs(&buf).unwrap();
    let mut out = Vec::new();
    concat(&buf, &[blocks[0].clone(), blocks[2].clone()], &mut out);
    assert_eq!(out, [a, c].concat());
    assert_eq!(count_records(Signal::Logs, &out), Ok(4));
}
