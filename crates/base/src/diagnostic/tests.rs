use super::*;

fn render(source: &str, span: Range<usize>, label: &str, help: Option<&str>) -> String {
    let mut d = Diagnostic::new("the message", span).label(label);
    if let Some(h) = help {
        d = d.help(h);
    }
    let errors = SourceErrors {
        path: "images.toml".into(),
        source_text: source.to_owned(),
        diagnostics: vec![d],
    };
    errors.render(false)
}

/// The column (in chars) of the first `^` on the underline line, and the
/// number of carets.
fn carets(rendered: &str) -> (usize, usize) {
    let line = rendered
        .lines()
        .find(|l| l.contains('^'))
        .expect("an underline");
    let at = line.chars().position(|c| c == '^').unwrap();
    (at, line.chars().filter(|&c| c == '^').count())
}

/// The column (in chars) where `needle` starts on the rendered source line.
fn column_of(rendered: &str, needle: &str) -> usize {
    let line = rendered.lines().find(|l| l.contains(needle)).unwrap();
    line[..line.find(needle).unwrap()].chars().count()
}

const SOURCE: &str = "[images.x]\npackage = \"helo\"\n";

#[test]
fn the_layout_is_cargos() {
    assert_eq!(
        render(
            SOURCE,
            21..27,
            "no such package",
            Some("packages are `hello`")
        ),
        "error: the message\n \
         --> images.toml:2:11\n  \
         |\n\
         2 | package = \"helo\"\n  \
         |           ^^^^^^ no such package\n  \
         |\n\
         help: packages are `hello`\n"
    );
    let source = "[images.x]\nfiles = { \"/etc/app/config.toml\" = { mode = 0o7777777 } }\n";
    let at = source.find("0o").unwrap();
    let out = render(source, at..at + 10, "expected an octal mode", None);
    assert!(out.contains("images.toml:2:45"), "{out}");
    assert_eq!(carets(&out), (column_of(&out, "0o"), 10));
    // No label, no help: no trailing space and no help block.
    assert_eq!(
        render(SOURCE, 21..27, "", None),
        "error: the message\n --> images.toml:2:11\n  |\n2 | package = \"helo\"\n  |           ^^^^^^\n"
    );
}

#[test]
fn every_diagnostic_is_rendered_in_order() {
    let errors = SourceErrors {
        path: "images.toml".into(),
        source_text: SOURCE.to_owned(),
        diagnostics: vec![
            Diagnostic::new("first", 1..7),
            Diagnostic::new("second", 11..18).help("h"),
        ],
    };
    let out = errors.render(false);
    assert!(out.starts_with("error: first\n"), "{out}");
    let second = out.find("error: second").unwrap();
    assert!(out[second..].contains("images.toml:2:1\n"), "{out}");
    assert!(out.ends_with("help: h\n"), "{out}");
}

#[test]
fn colour_only_adds_escapes() {
    let errors = SourceErrors {
        path: "images.toml".into(),
        source_text: SOURCE.to_owned(),
        diagnostics: vec![Diagnostic::new("m", 21..27).label("l").help("h")],
    };
    let styled = errors.render(true);
    assert!(styled.contains("\x1b[1m\x1b[91merror\x1b[0m"), "{styled:?}");
    assert!(styled.contains("\x1b[1m\x1b[96mhelp\x1b[0m"), "{styled:?}");
    let stripped = regex_lite::Regex::new("\x1b\\[[0-9;]*m")
        .unwrap()
        .replace_all(&styled, "");
    assert_eq!(stripped, errors.render(false));
    assert!(!errors.render(false).contains('\x1b'));
}

#[test]
fn the_gutter_widens_with_the_line_number() {
    let source = "a = 1\n".repeat(9) + "k = 1\n";
    let out = render(&source, 54..55, "ten", None);
    assert!(
        out.contains("\n  --> images.toml:10:1\n   |\n10 | k = 1\n   | ^ ten"),
        "{out}"
    );
}

#[test]
fn tabs_and_wide_characters_keep_the_caret_under_the_span() {
    let out = render("[images.x]\n\tpackage =\t\"x\"\n", 22..25, "tab", None);
    assert!(!out.contains('\t'), "{out}");
    assert_eq!(carets(&out), (column_of(&out, "\"x\""), 3));

    let source = "[images.x]\nname = \"日本語\" # é x\n";
    let quoted = source.find('"').unwrap();
    let out = render(source, quoted..quoted + "\"日本語\"".len(), "wide", None);
    // The header counts characters; the underline counts columns.
    assert!(out.contains("images.toml:2:8"), "{out}");
    assert_eq!(carets(&out), (column_of(&out, "\"日"), 8));
    let x = source.find(" x").unwrap() + 1;
    let out = render(source, x..x + 1, "after", None);
    assert!(out.contains("images.toml:2:18"), "{out}");
    // Each of the three wide characters is one char but two columns.
    assert_eq!(carets(&out).0, column_of(&out, " x") + 1 + 3);
}

#[test]
fn a_span_at_the_end_of_the_file_points_at_its_last_character() {
    let out = render(SOURCE, SOURCE.len()..SOURCE.len(), "here", None);
    assert!(out.contains("images.toml:2:17"), "{out}");
    assert!(out.contains("\n  |                 ^ here"), "{out}");
    // A multibyte last character is not split.
    let source = "name = \"é";
    let out = render(source, 100..200, "eof", None);
    assert!(out.contains("images.toml:1:9"), "{out}");
    assert_eq!(carets(&out), (column_of(&out, "é"), 1));
    let out = render("", 0..0, "empty", None);
    assert!(
        out.contains("images.toml:1:1\n  |\n1 |\n  | ^ empty"),
        "{out}"
    );
}

#[test]
fn spans_off_character_boundaries_or_reversed_do_not_panic() {
    let source = "a = \"日本\"\n";
    for (start, end) in [(5, 6), (6, 7), (7, 5), (0, 100), (11, 3), (100, 0)] {
        let span = start..end;
        let out = render(source, span.clone(), "x", None);
        assert!(out.contains('^'), "{span:?}: {out}");
    }
}

#[test]
fn a_span_over_lines_is_drawn_from_its_start_to_its_end() {
    let source = "[images.x]\nplatforms = [\n  \"a\",\n  \"b\"\n]\n";
    let out = render(source, 23..41, "multi", Some("h"));
    assert_eq!(
        out,
        "error: the message\n --> images.toml:2:13\n  |\n\
         2 |   platforms = [\n  \
         |  _____________^\n\
         3 | |   \"a\",\n\
         4 | |   \"b\"\n\
         5 | | ]\n  \
         | |__^ multi\n  \
         |\n\
         help: h\n"
    );
    let long = format!("[images.x]\nplatforms = [\n{}]\n", "  \"a\",\n".repeat(20));
    let out = render(&long, 23..long.len(), "", None);
    assert!(out.contains("\n... \n") || out.contains("\n...\n"), "{out}");
    assert!(out.lines().count() < 14, "{out}");
    assert!(out.contains("\n23 | | ]\n"), "{out}");
}

#[test]
fn a_long_line_is_cut_around_the_span() {
    let source = format!("tags = [\"{}\", \"bad tag\"]\n", "a".repeat(300));
    let at = source.find("\"bad").unwrap();
    let out = render(&source, at..at + 9, "here", None);
    let line = out.lines().find(|l| l.starts_with("1 |")).unwrap();
    assert!(line.chars().count() <= MAX_WIDTH + 10, "{line}");
    assert!(
        line.contains("...") && line.contains("\"bad tag\""),
        "{line}"
    );
    assert_eq!(carets(&out), (column_of(&out, "\"bad"), 9));
    // A span over lines from far along a long line: no line of the
    // rendering runs past the window.
    let over = format!("{}\n  \"b\",\n]\n", source.trim_end());
    let out = render(&over, at..over.len() - 1, "", None);
    assert!(out.contains("| |_^"), "{out}");
    assert!(
        out.lines().all(|l| l.chars().count() <= MAX_WIDTH + 12),
        "{out}"
    );
    // A span wider than the window is underlined to the window's edge.
    let out = render(&source, 8..source.len() - 1, "", None);
    assert!(carets(&out).1 <= MAX_WIDTH, "{out}");
}

#[test]
fn control_characters_and_carriage_returns_are_not_sent_to_the_terminal() {
    let source = "[images.x]\r\nname = \"\x1b[2J\u{202e}x\"\r\n";
    let at = source.find("name").unwrap();
    let out = render(source, at..at + 4, "l", None);
    assert!(
        !out.contains('\x1b') && !out.contains('\r') && !out.contains('\u{202e}'),
        "{out:?}"
    );
    assert!(out.contains("name = \"\u{fffd}[2J\u{fffd}x\"\n"), "{out:?}");
}
