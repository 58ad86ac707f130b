//! The Nagios plugin output format: `TEXT | perfdata` on the first line, more
//! text and perfdata on later lines, and perfdata items
//! `'label'=value[UOM];[warn];[crit];[min];[max]`.
//!
//! Units are normalised to base units: `s`, `ms`, `us` → `seconds`; `B`, `KB`,
//! `MB`, `GB`, `TB` → `bytes` (powers of 1024, as the monitoring-plugins
//! `check_disk` and `check_swap` count); `%` → `percent`; `c` → `count`; no unit →
//! `""`. Another unit is kept as written, with the value as it is. The thresholds,
//! min and max are scaled with their value.
//!
//! A threshold is a Nagios range (`10`, `10:`, `~:10`, `10:20`, `@10:20`). Its
//! series carries the number a reader takes as the limit: a plain number as is,
//! the end of `start:end` when there is one, else the start. The plugin's exit
//! status stays the authority on whether the range was crossed.
//!
//! Parsing never panics and never fails: items that cannot be read are skipped and
//! listed in [`PluginOutput::errors`].

/// What one run of a plugin said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginOutput {
    /// The first line's text, before `|`, trimmed.
    pub text: String,
    /// Every perfdata item that could be read, first occurrence of each label.
    pub perfdata: Vec<Perf>,
    /// Items that could not be read, for the log.
    pub errors: Vec<String>,
}

/// One perfdata item in base units.
#[derive(Debug, Clone, PartialEq)]
pub struct Perf {
    /// The label, unquoted.
    pub label: String,
    /// The value; NaN for `U` (the plugin could not measure).
    pub value: f64,
    /// `seconds`, `bytes`, `percent`, `count`, `""`, or the unit as written.
    pub unit: String,
    /// The warning threshold's limit.
    pub warn: Option<f64>,
    /// The critical threshold's limit.
    pub crit: Option<f64>,
    /// The smallest possible value.
    pub min: Option<f64>,
    /// The largest possible value.
    pub max: Option<f64>,
}

/// Parses a plugin's whole standard output.
pub fn parse_output(stdout: &str) -> PluginOutput {
    let mut out = PluginOutput::default();
    let mut lines = stdout.lines();
    let first = lines.next().unwrap_or("");
    let (text, perf) = match first.split_once('|') {
        Some((t, p)) => (t, Some(p)),
        None => (first, None),
    };
    out.text = text.trim().to_string();
    if let Some(p) = perf {
        parse_perfdata(p, &mut out);
    }
    // Long output: everything after the first `|` on later lines is perfdata.
    let mut in_perf = false;
    for line in lines {
        if in_perf {
            parse_perfdata(line, &mut out);
        } else if let Some((_, p)) = line.split_once('|') {
            in_perf = true;
            parse_perfdata(p, &mut out);
        }
    }
    out
}

/// Parses space-separated perfdata items into `out`.
fn parse_perfdata(s: &str, out: &mut PluginOutput) {
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let (item, next) = match next_item(rest) {
            Ok(v) => v,
            Err((msg, next)) => {
                out.errors.push(msg);
                rest = next.trim_start();
                continue;
            }
        };
        rest = next.trim_start();
        match item {
            Ok(p) => {
                if !out.perfdata.iter().any(|q| q.label == p.label) {
                    out.perfdata.push(p);
                }
            }
            Err(msg) => out.errors.push(msg),
        }
    }
}

type Item<'a> = (Result<Perf, String>, &'a str);

/// Reads one item from the start of `s`; returns it and the rest.
fn next_item(s: &str) -> Result<Item<'_>, (String, &str)> {
    let (label, after_label) = if let Some(quoted) = s.strip_prefix('\'') {
        // `''` inside a quoted label is one `'`.
        let mut label = String::new();
        let mut chars = quoted.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if quoted[i + 1..].starts_with('\'') {
                    label.push('\'');
                    chars.next();
                } else {
                    end = Some(i + 1);
                    break;
                }
            } else {
                label.push(c);
            }
        }
        match end {
            Some(e) => (label, &quoted[e..]),
            None => return Err((format!("unclosed quote in '{s}'"), "")),
        }
    } else {
        let end = s.find(['=', ' ']).unwrap_or(s.len());
        (s[..end].to_string(), &s[end..])
    };
    let Some(data) = after_label.strip_prefix('=') else {
        let skip = after_label.find(' ').map_or("", |i| &after_label[i..]);
        return Err((format!("perfdata item '{label}' has no '='"), skip));
    };
    let end = data.find(' ').unwrap_or(data.len());
    let (spec, rest) = (&data[..end], &data[end..]);
    if label.is_empty() {
        return Ok((Err(format!("perfdata item '={spec}' has no label")), rest));
    }
    Ok((perf(label, spec), rest))
}

/// `value[UOM];warn;crit;min;max` of `label`.
fn perf(label: String, spec: &str) -> Result<Perf, String> {
    let mut fields = spec.split(';');
    let value_uom = fields.next().unwrap_or("");
    let split = value_uom
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
        .unwrap_or(value_uom.len());
    // `1e` would eat the `e` of a unit like `events`; back off to the digits.
    let (num, uom) = match value_uom[..split].parse::<f64>() {
        Ok(_) => value_uom.split_at(split),
        Err(_) => {
            let digits = value_uom
                .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+')))
                .unwrap_or(value_uom.len());
            value_uom.split_at(digits)
        }
    };
    let (unit, factor) = unit(uom);
    let value = if num.is_empty() && uom == "U" {
        f64::NAN
    } else {
        num.parse::<f64>()
            .map_err(|_| format!("perfdata '{label}' has no number in '{value_uom}'"))?
            * factor
    };
    let mut next = || fields.next().and_then(limit).map(|v| v * factor);
    let (warn, crit, min, max) = (next(), next(), next(), next());
    Ok(Perf {
        label,
        value,
        unit: unit.to_string(),
        warn,
        crit,
        min,
        max,
    })
}

/// The base unit and the factor to it.
fn unit(uom: &str) -> (&str, f64) {
    match uom.to_ascii_lowercase().as_str() {
        "" => ("", 1.0),
        "s" => ("seconds", 1.0),
        "ms" => ("seconds", 1e-3),
        "us" => ("seconds", 1e-6),
        "%" => ("percent", 1.0),
        "b" => ("bytes", 1.0),
        "kb" => ("bytes", 1024.0),
        "mb" => ("bytes", 1024.0 * 1024.0),
        "gb" => ("bytes", 1024.0 * 1024.0 * 1024.0),
        "tb" => ("bytes", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        "c" => ("count", 1.0),
        _ => (uom, 1.0),
    }
}

/// The limit of a threshold range (see the module docs); `None` when empty.
fn limit(range: &str) -> Option<f64> {
    let r = range.trim().trim_start_matches('@');
    if r.is_empty() {
        return None;
    }
    match r.split_once(':') {
        None => r.parse().ok(),
        Some((start, end)) => match end.parse::<f64>() {
            Ok(e) => Some(e),
            Err(_) => start.trim_start_matches('~').parse().ok(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(label: &str, value: f64, unit: &str, t: [Option<f64>; 4]) -> Perf {
        Perf {
            label: label.into(),
            value,
            unit: unit.into(),
            warn: t[0],
            crit: t[1],
            min: t[2],
            max: t[3],
        }
    }

    #[test]
    fn first_line_text_and_perfdata() {
        let o = parse_output(
            "DISK OK - free space: / 3326 MB (56% inode=99%); | /=2643MB;5948;5958;0;5968\n",
        );
        assert_eq!(o.text, "DISK OK - free space: / 3326 MB (56% inode=99%);");
        let mib = 1024.0 * 1024.0;
        assert_eq!(
            o.perfdata,
            [p(
                "/",
                2643.0 * mib,
                "bytes",
                [
                    Some(5948.0 * mib),
                    Some(5958.0 * mib),
                    Some(0.0),
                    Some(5968.0 * mib)
                ]
            )]
        );
        assert!(o.errors.is_empty());
    }

    #[test]
    fn units_are_normalised() {
        let o = parse_output(
            "OK | time=0.5s rta=12.5ms;100;500 jitter=250us pct=50%;80;90;0;100 c=12c n=3 b=2KB t=1TB odd=7widgets",
        );
        let got: Vec<(&str, f64, &str)> = o
            .perfdata
            .iter()
            .map(|p| (p.label.as_str(), p.value, p.unit.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("time", 0.5, "seconds"),
                ("rta", 0.0125, "seconds"),
                ("jitter", 0.00025, "seconds"),
                ("pct", 50.0, "percent"),
                ("c", 12.0, "count"),
                ("n", 3.0, ""),
                ("b", 2048.0, "bytes"),
                ("t", 1024f64.powi(4), "bytes"),
                ("odd", 7.0, "widgets"),
            ]
        );
        assert_eq!(o.perfdata[1].warn, Some(0.1));
        assert_eq!(o.perfdata[1].crit, Some(0.5));
        assert_eq!(o.perfdata[3].max, Some(100.0));
    }

    #[test]
    fn quoted_labels_ranges_and_unknown_values() {
        let o = parse_output(
            "WARNING | 'a b'=1;10:;~:20 'it''s'=2;@5:10;1:3 'x'=U;;; 'load1'=0.120;15.000;30.000;0;",
        );
        assert_eq!(
            o.perfdata[0],
            p("a b", 1.0, "", [Some(10.0), Some(20.0), None, None])
        );
        assert_eq!(
            o.perfdata[1],
            p("it's", 2.0, "", [Some(10.0), Some(3.0), None, None])
        );
        assert!(o.perfdata[2].value.is_nan());
        assert_eq!(
            o.perfdata[3],
            p("load1", 0.12, "", [Some(15.0), Some(30.0), Some(0.0), None])
        );
    }

    #[test]
    fn long_output_carries_more_perfdata() {
        let o = parse_output("OK - all fine | a=1\nline two\nline three | b=2s\nc=3%\n");
        assert_eq!(o.text, "OK - all fine");
        let labels: Vec<&str> = o.perfdata.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["a", "b", "c"]);
    }

    #[test]
    fn bad_items_are_skipped_and_reported() {
        let o = parse_output("OK | a=1 broken b=x =5 'open=1 c=2");
        let labels: Vec<&str> = o.perfdata.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["a"]);
        assert_eq!(o.errors.len(), 4, "{:?}", o.errors);
        let o = parse_output("OK | a=1 a=2 b=3");
        let values: Vec<f64> = o.perfdata.iter().map(|p| p.value).collect();
        assert_eq!(values, [1.0, 3.0], "the first of a label wins");
    }

    #[test]
    fn no_perfdata_and_no_output() {
        assert_eq!(parse_output("PING OK\n").text, "PING OK");
        assert_eq!(parse_output(""), PluginOutput::default());
    }

    proptest! {
        #[test]
        fn never_panics(s in any::<String>()) {
            let _ = parse_output(&s);
        }

        #[test]
        fn never_panics_on_perfdata_like_text(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("'"), Just("="), Just(";"), Just(" "), Just("|"), Just("\n"), Just("1"),
                    Just("ms"), Just("@"), Just(":"), Just("~"), Just("U"), Just("é"), Just("e"), Just("-"),
                ],
                0..80,
            )
        ) {
            let _ = parse_output(&parts.concat());
        }

        #[test]
        fn values_round_trip(label in "[a-z][a-z0-9_ ]{0,12}", v in -1e9f64..1e9, w in proptest::option::of(0f64..1e6)) {
            let warn = w.map(|w| w.to_string()).unwrap_or_default();
            let o = parse_output(&format!("OK | '{label}'={v}ms;{warn}"));
            prop_assert_eq!(o.perfdata.len(), 1);
            let got = &o.perfdata[0];
            prop_assert_eq!(&got.label, &label);
            prop_assert!((got.value - v / 1000.0).abs() <= 1e-9 * v.abs().max(1.0));
            prop_assert_eq!(got.unit.as_str(), "seconds");
            prop_assert_eq!(got.warn.is_some(), w.is_some());
        }
    }
}
