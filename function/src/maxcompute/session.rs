//! Upload session statuses and what each proves about the session's rows: the one place the
//! load stage and the Tunnel client read a status (`docs/maxcompute-protocol.md`, "Status values";
//! `docs/reliability.md`, "Session status").

/// What an upload session's status proves about its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// `CLOSED`: committed.
    Committed,
    /// `NORMAL`: open; takes blocks and a commit.
    Open,
    /// `CLOSING` or `COMMITTING`: a commit is under way. Wait; never replace the session.
    Committing,
    /// `CANCELED`: never committed and never will.
    Canceled,
    /// Anything else (`EXPIRED`, which a committed session also reports once its lifetime
    /// passed, `CRITICAL`, `UNKNOWN`, empty): it can no longer commit, and whether it did is
    /// not told. Only the caller's own record (was a commit ever requested?) can settle it.
    Unknown,
}

impl SessionState {
    /// The state an (upper-cased) status proves.
    pub fn of(status: &str) -> Self {
        match status {
            "CLOSED" => SessionState::Committed,
            "NORMAL" => SessionState::Open,
            "CLOSING" | "COMMITTING" => SessionState::Committing,
            "CANCELED" | "CANCELLED" => SessionState::Canceled,
            _ => SessionState::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SessionState;

    #[test]
    fn only_closed_is_committed_and_only_a_proof_of_nothing_is_unknown() {
        assert_eq!(SessionState::of("CLOSED"), SessionState::Committed);
        assert_eq!(SessionState::of("NORMAL"), SessionState::Open);
        assert_eq!(SessionState::of("CLOSING"), SessionState::Committing);
        assert_eq!(SessionState::of("COMMITTING"), SessionState::Committing);
        assert_eq!(SessionState::of("CANCELED"), SessionState::Canceled);
        for status in ["EXPIRED", "CRITICAL", "UNKNOWN", ""] {
            assert_eq!(SessionState::of(status), SessionState::Unknown, "{status}");
        }
    }
}
