//! The Prometheus text format 0.0.4, made from OpenMetrics text, for scrapers
//! that do not ask for OpenMetrics.

/// OpenMetrics text as the Prometheus text format 0.0.4: counter and info
/// families take their sample names (`x_total`, `x_info`; info as a gauge),
/// `# UNIT` and `# EOF` go.
pub fn to_text_format(openmetrics: &str) -> String {
    let mut renamed: Vec<(&str, &str, &str)> = Vec::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            match rest.split_once(' ') {
                Some((name, "counter")) => renamed.push((name, "_total", "counter")),
                Some((name, "info")) => renamed.push((name, "_info", "gauge")),
                _ => {}
            }
        }
    }
    let rename = |name: &str| {
        renamed
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, suffix, kind)| (*suffix, *kind))
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, _)) = rest.split_once(' ')
            && let Some((suffix, kind)) = rename(name)
        {
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ")
            && let Some((name, help)) = rest.split_once(' ')
            && let Some((suffix, _)) = rename(name)
        {
            out.push_str(&format!("# HELP {name}{suffix} {help}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}
