//! Rendering `summary`, `description` and `runbook` for one alert instance.
//!
//! `{{value}}` is the instance's value and `{{NAME}}` the value of its label
//! `NAME` (every label of the instance: the series', the rule's, `alertname`,
//! `severity`). Spaces inside the braces are allowed, and the Prometheus spellings
//! `{{$value}}` and `{{$labels.NAME}}` work too. A label the instance lacks renders
//! as an empty string; text that is not a placeholder is kept as written.
//!
//! Values are written for people: whole numbers without decimals (`93`), others
//! with up to 4 decimals (`93.4568`), or, below 1, with 4 significant digits
//! (`0.001235`); trailing zeros are dropped; `NaN`, `+Inf`, `-Inf`.

use warden_engine::model::Labels;

/// `value` written for people (see the module doc).
pub fn humanize(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{}", value as i64);
    }
    let a = value.abs();
    let decimals = if a >= 1.0 {
        4
    } else {
        // 4 significant digits: as many decimals as leading zeros + 4.
        let leading = (-a.log10()).floor().max(0.0) as usize;
        (leading + 4).min(17)
    };
    let s = format!("{value:.decimals$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// `template` with its placeholders replaced for an instance with `labels` and `value`.
pub fn render(template: &str, labels: &Labels, value: f64) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = after[..close].trim();
        let name = name
            .strip_prefix("$labels.")
            .or_else(|| name.strip_prefix('$'))
            .unwrap_or(name);
        if name == "value" {
            out.push_str(&humanize(value));
        } else if crate::vector::is_label_name(name) {
            out.push_str(labels.get(name).unwrap_or(""));
        } else {
            out.push_str(&rest[open..open + 2 + close + 2]);
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanizes_values() {
        assert_eq!(humanize(93.0), "93");
        assert_eq!(humanize(-4.0), "-4");
        assert_eq!(humanize(93.456789), "93.4568");
        assert_eq!(humanize(93.5), "93.5");
        assert_eq!(humanize(0.0012345678), "0.001235");
        assert_eq!(humanize(0.5), "0.5");
        assert_eq!(humanize(1e20), "100000000000000000000");
        assert_eq!(humanize(f64::NAN), "NaN");
        assert_eq!(humanize(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn renders_placeholders() {
        let l = Labels::new([("instance", "db-1"), ("mountpoint", "/var")]).unwrap();
        assert_eq!(
            render(
                "{{instance}} {{ mountpoint }} is {{value}}% full",
                &l,
                91.25
            ),
            "db-1 /var is 91.25% full"
        );
        assert_eq!(render("{{$labels.instance}}={{$value}}", &l, 2.0), "db-1=2");
        assert_eq!(
            render("{{missing}}|{{ not a label }}|{{open", &l, 1.0),
            "|{{ not a label }}|{{open"
        );
    }
}
