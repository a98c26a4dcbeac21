//! Streaming the decoded text of a generation: its tokens decoded as they come
//! ([`Detokenizer`]), and pieces handed out only once they are final, so a
//! client never sees text that a stop string or the next byte of a UTF-8
//! sequence would take back ([`TextStream`]).

use std::borrow::Cow;

use crate::error::Result;

/// A generation's text, decoded a few tokens at a time instead of from the
/// start at every step (a decode of all 1,300 tokens of a long answer took
/// 330 us with SmolLM2's tokenizer, per sequence and step). This is
/// text-generation-inference's `decode_token`: the new tokens are decoded
/// together with the tokens just before them, whose text is known, so that a
/// decoder that treats a decode's first token specially (SentencePiece's
/// leading space) and multi-byte characters split across tokens come out as a
/// whole decode gives them.
pub(crate) struct Detokenizer {
    /// First token decoded again as context for the new ones.
    prefix_offset: usize,
    /// Tokens whose text is in `text`.
    read_offset: usize,
    /// The text of the first `read_offset` tokens.
    text: String,
}

impl Detokenizer {
    pub(crate) fn new() -> Self {
        Self {
            prefix_offset: 0,
            read_offset: 0,
            text: String::new(),
        }
    }

    /// The text of `ids` (the same tokens as the last call's, and more after
    /// them) as `decode(ids)` gives it, ending in U+FFFD while the last tokens
    /// are an unfinished UTF-8 sequence. `decode` runs on the last few tokens
    /// only, unless their decode disagrees with the text before them; then on
    /// all of `ids`.
    pub(crate) fn text(
        &mut self,
        ids: &[u32],
        decode: impl Fn(&[u32]) -> Result<String>,
    ) -> Result<Cow<'_, str>> {
        let prefix = decode(&ids[self.prefix_offset..self.read_offset])?;
        let window = decode(&ids[self.prefix_offset..])?;
        let Some(new) = window.strip_prefix(prefix.as_str()) else {
            // The context decodes differently next to the new tokens (not
            // seen with byte-level BPE): the whole decode is the answer.
            return Ok(Cow::Owned(decode(ids)?));
        };
        if new.ends_with('\u{FFFD}') {
            // Part of a character: shown as a whole decode shows it, and
            // decoded again with its next bytes.
            return Ok(Cow::Owned(format!("{}{new}", self.text)));
        }
        // Tokens with no text (skipped special tokens) stay in the window, so
        // the next token still has context to be decoded after.
        if !new.is_empty() {
            self.text.push_str(new);
            self.prefix_offset = self.read_offset;
            self.read_offset = ids.len();
        }
        Ok(Cow::Borrowed(&self.text))
    }
}

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

    /// Feeds `ids` one token at a time and checks every text against a whole
    /// decode of the tokens so far.
    fn decodes_as_a_whole(ids: &[u32], decode: impl Fn(&[u32]) -> Result<String>) {
        let mut d = Detokenizer::new();
        for n in 1..=ids.len() {
            let want = decode(&ids[..n]).unwrap();
            assert_eq!(
                d.text(&ids[..n], &decode).unwrap(),
                want,
                "after {n} tokens"
            );
        }
    }

    #[test]
    fn incremental_decoding_equals_a_whole_decode_byte_level() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama-tiny");
        let tok = crate::tokenizer::Tokenizer::from_hf_dir(&dir).unwrap();
        // A tiny vocabulary: multi-byte characters split over several tokens.
        let text = "Café au lait, 天気 is 🙂 — naïve   spacing\n\nQ: ok?";
        let ids = tok.encode(text, false).unwrap();
        let split =
            (1..ids.len()).any(|n| tok.decode(&ids[..n], true).unwrap().ends_with('\u{FFFD}'));
        assert!(split, "some character spans tokens");
        decodes_as_a_whole(&ids, |ids| tok.decode(ids, true));
    }

    #[test]
    fn incremental_decoding_keeps_sentencepiece_spaces() {
        // SentencePiece decoding: `▁` is a space, and a decode drops the space
        // its first piece starts with; id 0 is a special token with no text.
        let pieces = ["", "▁The", "▁sky", "'s", "▁blue", "", "▁!", "▁", "a"];
        let decode = |ids: &[u32]| -> Result<String> {
            let text: String = ids.iter().map(|&i| pieces[i as usize]).collect();
            let text = text.replace('▁', " ");
            Ok(text.strip_prefix(' ').unwrap_or(&text).to_string())
        };
        decodes_as_a_whole(&[1, 2, 3, 0, 4, 6, 0, 0, 7, 8, 1], decode);
        decodes_as_a_whole(&[0, 1, 7, 7, 2], decode);
    }

    #[test]
    fn incomplete_utf8_waits_for_its_next_byte() {
        let (pieces, _, text) = run(&[], &["caf", "caf\u{FFFD}", "café"]);
        assert_eq!(pieces, vec!["caf", "", "é", ""]);
        assert_eq!(text, "café");
    }
}
