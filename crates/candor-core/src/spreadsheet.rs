//! Cells of the CSV files Candor writes for people to open, made safe for spreadsheets.

use std::borrow::Cow;

/// A text that cannot start a formula when a spreadsheet opens the CSV cell it is written to
/// (CSV or formula injection): a text starting with `=`, `+`, `-`, `@`, a tab or a carriage
/// return gets a single quote in front, as OWASP recommends, so `=HYPERLINK(…)` is shown as
/// text rather than run. Phone numbers (`+44 …`) and negative numbers get the quote too; a
/// spreadsheet shows them as text. Any other text is returned as it is.
pub fn csv_cell(text: &str) -> Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn texts_that_would_start_a_formula_are_quoted() {
        for (text, cell) in [
            ("=HYPERLINK(\"http://evil.example\",\"x\")", "'=HYPERLINK(\"http://evil.example\",\"x\")"),
            ("+44 20 7946 0958", "'+44 20 7946 0958"),
            ("-5", "'-5"),
            ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
            ("\t=1+1", "'\t=1+1"),
            ("\r=1+1", "'\r=1+1"),
            ("'=already quoted", "'=already quoted"),
        ] {
            assert_eq!(csv_cell(text), cell, "{text:?}");
        }
    }

    #[test]
    fn other_texts_are_unchanged() {
        for text in ["", "Ada Lovelace", "ada@example.com", "a=b", " =1", "2026-01-01", "{\"a\":-1}", "'"] {
            assert!(matches!(csv_cell(text), std::borrow::Cow::Borrowed(t) if t == text), "{text:?}");
        }
    }
}
