//! Small text helpers shared by tool answers and CLI output.

/// The first line of `s`, cut to `max` characters with an ellipsis.
pub fn first_line(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() > max {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cuts_to_the_first_line_and_width() {
        assert_eq!(super::first_line("abc\ndef", 10), "abc");
        assert_eq!(super::first_line("abcdef", 3), "abc…");
        assert_eq!(super::first_line("", 3), "");
    }
}
