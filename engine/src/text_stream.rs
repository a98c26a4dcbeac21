//! Streaming the decoded text of a generation: pieces are handed out only once
//! they are final, so a client never sees text that a stop string or the next
//! byte of a UTF-8 sequence would take back.

/// Turns the growing decoded text into final pieces: holds back text that may
/// still become a stop string, and an incomplete UTF-8 sequence (decoded as U+FFFD).
pub(crate) struct TextStream {
    stop: Vec<String>,
    /// Text handed out so far (and, at the end, the whole answer).
    pub(crate) text: String,
    /// Latest full decode.
    pending: String,
}

impl TextStream {
    pub(crate) fn new(stop: &[String]) -> Self {
        Self {
            stop: stop.to_vec(),
            text: String::new(),
            pending: String::new(),
        }
    }

    /// Takes the full decoded text so far; returns the new final piece and
    /// whether a stop string was found (the piece then ends before it).
    pub(crate) fn push(&mut self, full: &str) -> (&str, bool) {
        let start = self.text.len();
        if let Some(cut) = self
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| full.find(s.as_str()))
            .min()
        {
            let cut = cut.max(start);
            self.text.push_str(&full[start..cut]);
            return (&self.text[start..], true);
        }
        self.pending = full.to_string();
        let mut end = full.len();
        if full.ends_with('\u{FFFD}') {
            end -= '\u{FFFD}'.len_utf8();
        }
        // Hold back the longest suffix that is a prefix of a stop string.
        let hold = self
            .stop
            .iter()
            .map(|s| partial_stop(&full[..end], s))
            .max()
            .unwrap_or(0);
        end -= hold;
        let end = end.max(start);
        if full.is_char_boundary(end) && full.get(..start) == Some(&self.text[..]) {
            self.text.push_str(&full[start..end]);
            (&self.text[start..], false)
        } else {
            ("", false)
        }
    }

    /// Releases what was held back once generation ended without a stop string.
    pub(crate) fn finish(&mut self) -> &str {
        let start = self.text.len();
        if !self.pending.starts_with(&self.text) {
            // The decode rewrote text already streamed (not seen with byte-level
            // BPE): the answer is the final decode; nothing more can be streamed.
            self.text = std::mem::take(&mut self.pending);
            return "";
        }
        if self.pending.len() > start {
            let rest = self.pending[start..].to_string();
            self.text.push_str(&rest);
        }
        &self.text[start..]
    }
}

/// Length of the longest proper prefix of `stop` that `text` ends with.
fn partial_stop(text: &str, stop: &str) -> usize {
    stop.char_indices()
        .skip(1)
        .map(|(i, _)| i)
        .filter(|&i| text.ends_with(&stop[..i]))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stop: &[&str], steps: &[&str]) -> (Vec<String>, bool, String) {
        let stop: Vec<String> = stop.iter().map(|s| s.to_string()).collect();
        let mut s = TextStream::new(&stop);
        let mut pieces = Vec::new();
        for full in steps {
            let (p, stopped) = s.push(full);
            pieces.push(p.to_string());
            if stopped {
                return (pieces, true, s.text);
            }
        }
        let rest = s.finish().to_string();
        pieces.push(rest);
        (pieces, false, s.text)
    }

    #[test]
    fn stop_string_split_across_tokens_is_held_back_and_cut() {
        let (pieces, stopped, text) = run(
            &["\nQ:"],
            &[
                "The",
                "The answer",
                "The answer\n",
                "The answer\nQ",
                "The answer\nQ:",
            ],
        );
        assert!(stopped);
        assert_eq!(text, "The answer");
        assert_eq!(pieces.concat(), "The answer");
        assert!(!pieces.iter().any(|p| p.contains('\n')));
    }

    #[test]
    fn held_back_prefix_is_released_when_it_is_not_a_stop() {
        let (pieces, stopped, text) = run(&["\nQ:"], &["a\n", "a\nb"]);
        assert!(!stopped);
        assert_eq!(text, "a\nb");
        assert_eq!(pieces.concat(), "a\nb");
    }

    #[test]
    fn incomplete_utf8_waits_for_its_next_byte() {
        let (pieces, _, text) = run(&[], &["caf", "caf\u{FFFD}", "café"]);
        assert_eq!(pieces, vec!["caf", "", "é", ""]);
        assert_eq!(text, "café");
    }
}
