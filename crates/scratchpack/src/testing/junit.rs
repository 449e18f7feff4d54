//! JUnit XML reports of image test runs, in the shape CI systems read
//! (the Ant JUnit schema): one `testsuite` per image and platform, one
//! `testcase` per test, a `failure` element and the captured output in
//! `system-out` for each failure, and a service's output for each service
//! test.

use std::fmt::Write as _;

use super::{TestReport, Verdict};

/// The XML document for `reports`, suites and cases sorted by name so the
/// same results give the same bytes.
pub fn render(reports: &[TestReport]) -> String {
    let mut sorted: Vec<&TestReport> = reports.iter().collect();
    sorted.sort_by(|a, b| {
        let key = |r: &TestReport| (r.id.image.clone(), r.id.platform.clone(), r.id.test.clone());
        key(a).cmp(&key(b))
    });
    let failures = |rs: &[&TestReport]| rs.iter().filter(|r| r.verdict == Verdict::Failed).count();
    let skipped = |rs: &[&TestReport]| rs.iter().filter(|r| r.verdict == Verdict::Skipped).count();
    let seconds = |rs: &[&TestReport]| rs.iter().map(|r| r.duration.as_secs_f64()).sum::<f64>();

    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"scratchpack image tests\" tests=\"{}\" failures=\"{}\" errors=\"0\" time=\"{:.3}\">",
        sorted.len(),
        failures(&sorted),
        seconds(&sorted)
    );
    for suite in sorted.chunk_by(|a, b| a.id.image == b.id.image && a.id.platform == b.id.platform)
    {
        let first = &suite[0].id;
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{:.3}\">",
            escape(&format!("{} [{}]", first.image, first.platform)),
            suite.len(),
            failures(suite),
            skipped(suite),
            seconds(suite)
        );
        for r in suite {
            let _ = write!(
                xml,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                escape(&format!("{}.{}", r.id.image, r.id.platform)),
                escape(&r.id.test),
                r.duration.as_secs_f64()
            );
            match (&r.verdict, &r.failure) {
                (Verdict::Failed, failure) => {
                    let text = failure.as_deref().unwrap_or("failed");
                    let message = text.lines().next().unwrap_or("failed");
                    xml.push_str(">\n");
                    let _ = writeln!(
                        xml,
                        "      <failure message=\"{}\" type=\"failure\">{}</failure>",
                        escape(message),
                        escape(text)
                    );
                    if !r.output.is_empty() {
                        let _ =
                            writeln!(xml, "      <system-out>{}</system-out>", escape(&r.output));
                    }
                    xml.push_str("    </testcase>\n");
                }
                (Verdict::Cached, _) => {
                    xml.push_str(">\n      <system-out>cached: passed before with this image and test</system-out>\n    </testcase>\n");
                }
                (Verdict::Skipped, reason) => {
                    let _ = writeln!(
                        xml,
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        escape(reason.as_deref().unwrap_or("skipped"))
                    );
                }
                // A service's output is kept when it passed too.
                (Verdict::Passed, _) if !r.output.is_empty() => {
                    let _ = writeln!(
                        xml,
                        ">\n      <system-out>{}</system-out>\n    </testcase>",
                        escape(&r.output)
                    );
                }
                (Verdict::Passed, _) => xml.push_str("/>\n"),
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

/// Text made safe for XML content and attribute values. Characters XML 1.0
/// cannot carry at all (most control characters) become U+FFFD: a program's
/// output may contain anything.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || matches!(c, '\u{fffe}' | '\u{ffff}') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::TestId;

    fn report(test: &str, platform: &str, verdict: Verdict, failure: Option<&str>) -> TestReport {
        TestReport {
            id: TestId {
                image: "hello".into(),
                test: test.into(),
                platform: platform.into(),
            },
            verdict,
            duration: Duration::from_millis(1500),
            failure: failure.map(str::to_owned),
            output: if failure.is_some() {
                "--- stdout\n<bad> & \u{1b}[0m\n".into()
            } else {
                String::new()
            },
        }
    }

    #[test]
    fn suites_cases_failures_and_escaping() {
        let xml = render(&[
            report("b", "linux/arm64", Verdict::Passed, None),
            report(
                "a",
                "linux/amd64",
                Verdict::Failed,
                Some("exit code: expected \"0\" <3>"),
            ),
            report("c", "linux/amd64", Verdict::Cached, None),
        ]);
        assert!(
            xml.contains("<testsuites name=\"scratchpack image tests\" tests=\"3\" failures=\"1\""),
            "{xml}"
        );
        assert!(
            xml.contains("<testsuite name=\"hello [linux/amd64]\" tests=\"2\" failures=\"1\""),
            "{xml}"
        );
        assert!(
            xml.contains("<testsuite name=\"hello [linux/arm64]\" tests=\"1\" failures=\"0\""),
            "{xml}"
        );
        assert!(
            xml.contains("message=\"exit code: expected &quot;0&quot; &lt;3&gt;\""),
            "{xml}"
        );
        assert!(
            xml.contains("<system-out>--- stdout\n&lt;bad&gt; &amp; \u{fffd}[0m\n</system-out>"),
            "{xml}"
        );
        assert!(!xml.contains('\u{1b}'));
        // Sorted: test `a` comes before `c` in the amd64 suite.
        assert!(xml.find("name=\"a\"").unwrap() < xml.find("name=\"c\"").unwrap());
    }

    #[test]
    fn skipped_tests_say_why() {
        let xml = render(&[
            report("a", "linux/arm64", Verdict::Skipped, None),
            report("b", "linux/arm64", Verdict::Passed, None),
        ]);
        assert!(
            xml.contains("<testsuite name=\"hello [linux/arm64]\" tests=\"2\" failures=\"0\" errors=\"0\" skipped=\"1\""),
            "{xml}"
        );
        let mut skipped = report("c", "linux/arm64", Verdict::Skipped, None);
        skipped.failure = Some("no emulator for arm64: install <qemu-user-static>".into());
        let xml = render(&[skipped]);
        assert!(
            xml.contains(
                "<skipped message=\"no emulator for arm64: install &lt;qemu-user-static&gt;\"/>"
            ),
            "{xml}"
        );
    }
}
