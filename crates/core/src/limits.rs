//! What the ledger keeps per job, at most: every text an entry holds is bounded, whatever a
//! sink or an error puts in it (DynamoDB refuses items over 400 KB; SQLite rows have no limit
//! but should not grow with a job's content either). See
//! [`JobState::bounded`](crate::state::JobState::bounded).

/// Characters of `reason`.
pub const REASON_CHARS: usize = 4096;
/// Ids in one receipt.
pub const RECEIPT_IDS: usize = 32;
/// Characters of one receipt id's value.
pub const ID_CHARS: usize = 1024;
/// Characters of a job name.
pub const NAME_CHARS: usize = 1024;
/// Bytes of a whole entry (its JSON) after which receipts are cut further (to
/// [`RECEIPT_IDS_WHEN_LARGE`] ids of [`ID_CHARS_WHEN_LARGE`] characters). With at most
/// [`MAX_SINKS`](crate::config::MAX_SINKS) sinks, a cut entry stays under about 60 KB: far
/// below DynamoDB's 400 KB per item.
pub const ENTRY_BYTES: usize = 64 * 1024;
/// Ids per receipt in an entry over [`ENTRY_BYTES`].
pub const RECEIPT_IDS_WHEN_LARGE: usize = 8;
/// Characters per id in an entry over [`ENTRY_BYTES`].
pub const ID_CHARS_WHEN_LARGE: usize = 256;

/// Cuts `s` to at most `max` characters, saying how many were left out.
pub fn cut_text(s: &mut String, max: usize) {
    let n = s.chars().count();
    if n > max {
        let keep = max.saturating_sub(40);
        let at = s.char_indices().nth(keep).map(|(i, _)| i).unwrap_or(s.len());
        s.truncate(at);
        s.push_str(&format!("… ({} more characters)", n - keep));
    }
}
