//! The SQL subset's tokens: words, numbers, quoted names, strings and symbols.

use super::{PARSE_ERROR, SqlError};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Word(String),
    Quoted(String),
    Str(String),
    Num(String),
    Sym(char),
}

pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) at: usize,
}

pub(super) fn tokenize(sql: &str) -> Result<Vec<Token>, SqlError> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = sql[i..].chars().next().unwrap_or(' ');
        let start = i;
        if c.is_whitespace() {
            i += c.len_utf8();
        } else if sql[i..].starts_with("--") {
            i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n);
        } else if c == '\'' || c == '"' || c == '`' {
            let mut text = String::new();
            i += 1;
            loop {
                let Some(ch) = sql[i..].chars().next() else {
                    return Err(error_at(sql, start, "unterminated quote"));
                };
                i += ch.len_utf8();
                if ch == c {
                    break;
                }
                if ch == '\\' && c != '`' {
                    let Some(esc) = sql[i..].chars().next() else {
                        return Err(error_at(sql, start, "unterminated quote"));
                    };
                    i += esc.len_utf8();
                    text.push(match esc {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                } else {
                    text.push(ch);
                }
            }
            out.push(Token {
                tok: if c == '`' {
                    Tok::Quoted(text)
                } else {
                    Tok::Str(text)
                },
                at: start,
            });
        } else if c.is_alphabetic() || c == '_' {
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] >= 0x80)
            {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Word(sql[start..i].to_owned()),
                at: start,
            });
        } else if c.is_ascii_digit()
            || (c == '-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            i += 1;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Num(sql[start..i].to_owned()),
                at: start,
            });
        } else if "(),;<>=.*:".contains(c) {
            i += 1;
            out.push(Token {
                tok: Tok::Sym(c),
                at: start,
            });
        } else {
            return Err(error_at(sql, start, &format!("unexpected character '{c}'")));
        }
    }
    Ok(out)
}

pub(super) fn error_at(sql: &str, at: usize, reason: &str) -> SqlError {
    let before = &sql[..at.min(sql.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    SqlError {
        code: PARSE_ERROR,
        message: format!("[{line},{col}] Parse exception - {reason}"),
    }
}
