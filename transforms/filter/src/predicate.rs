//! The predicate language of `filter`, parsed once at configure time:
//!
//! ```text
//! expr    := and ('||' and)*
//! and     := unary ('&&' unary)*
//! unary   := '!' unary | '(' expr ')' | operand [test]
//! test    := op operand | 'is' ['not'] 'null' | ['not'] 'in' '(' operand (',' operand)* ')'
//! op      := '==' | '=' | '!=' | '<>' | '<' | '<=' | '>' | '>='
//! operand := column | number | 'text' | "text" | true | false | null
//! ```
//!
//! Evaluation is three-valued as in SQL: a comparison with NULL is unknown, and a row is kept only
//! when the predicate is true.

use std::cmp::Ordering;

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
/// A column reference or a literal.
pub enum Operand {
    Column(usize),
    Lit(Val),
}

#[derive(Debug, Clone, Copy, PartialEq)]
/// A comparison operator.
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed predicate.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(Operand, Op, Operand),
    IsNull(Operand, bool),
    In(Operand, Vec<Operand>, bool),
    Truthy(Operand),
}

/// Parses `text` against the input column names; errors give the 1-based character position.
pub fn parse(text: &str, columns: &[String]) -> Result<Expr, String> {
    let tokens = lex(text)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        columns,
        len: text.chars().count(),
        depth: 0,
    };
    let expr = p.or()?;
    if p.pos < p.tokens.len() {
        return Err(p.error("unexpected input"));
    }
    Ok(expr)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(f64),
    Str(String),
    Sym(&'static str),
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), at));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || chars[i] == '.'
                    || chars[i] == 'e'
                    || chars[i] == 'E')
            {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            let n = s
                .parse()
                .map_err(|_| format!("position {at}: '{s}' is not a number"))?;
            out.push((Tok::Num(n), at));
        } else if c == '\'' || c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("position {at}: unterminated string")),
                    Some(&q) if q == c => break,
                    Some('\\') if i + 1 < chars.len() => {
                        s.push(chars[i + 1]);
                        i += 2;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            i += 1;
            out.push((Tok::Str(s), at));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let sym = ["&&", "||", "==", "!=", "<>", "<=", ">="]
                .into_iter()
                .find(|s| *s == two);
            let (sym, len) = match sym {
                Some(s) => (s, 2),
                None => match c {
                    '!' => ("!", 1),
                    '=' => ("=", 1),
                    '<' => ("<", 1),
                    '>' => (">", 1),
                    '(' => ("(", 1),
                    ')' => (")", 1),
                    ',' => (",", 1),
                    _ => return Err(format!("position {at}: unexpected character '{c}'")),
                },
            };
            out.push((Tok::Sym(sym), at));
            i += len;
        }
    }
    Ok(out)
}

/// How deep parentheses and `!` may nest.
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    tokens: Vec<(Tok, usize)>,
    pos: usize,
    columns: &'a [String],
    len: usize,
    /// Levels of `(` and `!` open at `pos`.
    depth: usize,
}

impl Parser<'_> {
    /// One more level of `(` or `!`. The parser and `Expr::eval` recurse per level, so the
    /// depth is bounded: found by fuzzing, 60,000 `(` overflowed the native stack.
    fn nest(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(&format!(
                "parentheses and '!' nest deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(())
    }

    fn error(&self, what: &str) -> String {
        let at = self.tokens.get(self.pos).map_or(self.len + 1, |t| t.1);
        format!("position {at}: {what}")
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.0)
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if *x == s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(x)) if x.eq_ignore_ascii_case(w)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut parts = vec![self.and()?];
        while self.eat_sym("||") {
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut parts = vec![self.unary()?];
        while self.eat_sym("&&") {
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat_sym("!") {
            self.nest()?;
            let e = self.unary();
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e?)));
        }
        if self.eat_sym("(") {
            self.nest()?;
            let e = self.or();
            self.depth -= 1;
            let e = e?;
            if !self.eat_sym(")") {
                return Err(self.error("expected ')'"));
            }
            return Ok(e);
        }
        let left = self.operand()?;
        if self.eat_word("is") {
            let negated = self.eat_word("not");
            if !self.eat_word("null") {
                return Err(self.error("expected 'null' after 'is'"));
            }
            return Ok(Expr::IsNull(left, negated));
        }
        let negated = self.eat_word("not");
        if self.eat_word("in") {
            if !self.eat_sym("(") {
                return Err(self.error("expected '(' after 'in'"));
            }
            let mut list = vec![self.operand()?];
            while self.eat_sym(",") {
                list.push(self.operand()?);
            }
            if !self.eat_sym(")") {
                return Err(self.error("expected ')' to close the 'in' list"));
            }
            return Ok(Expr::In(left, list, negated));
        }
        if negated {
            return Err(self.error("expected 'in' after 'not'"));
        }
        let op = match self.peek() {
            Some(Tok::Sym("==" | "=")) => Op::Eq,
            Some(Tok::Sym("!=" | "<>")) => Op::Ne,
            Some(Tok::Sym("<")) => Op::Lt,
            Some(Tok::Sym("<=")) => Op::Le,
            Some(Tok::Sym(">")) => Op::Gt,
            Some(Tok::Sym(">=")) => Op::Ge,
            _ => return Ok(Expr::Truthy(left)),
        };
        self.pos += 1;
        Ok(Expr::Cmp(left, op, self.operand()?))
    }

    fn operand(&mut self) -> Result<Operand, String> {
        let tok = self
            .peek()
            .cloned()
            .ok_or_else(|| self.error("expected a column or a value"))?;
        let operand = match tok {
            Tok::Num(n) => Operand::Lit(Val::Num(n)),
            Tok::Str(s) => Operand::Lit(Val::Str(s)),
            Tok::Ident(w) if w.eq_ignore_ascii_case("true") => Operand::Lit(Val::Bool(true)),
            Tok::Ident(w) if w.eq_ignore_ascii_case("false") => Operand::Lit(Val::Bool(false)),
            Tok::Ident(w) if w.eq_ignore_ascii_case("null") => Operand::Lit(Val::Null),
            Tok::Ident(w) => match self.columns.iter().position(|c| c.eq_ignore_ascii_case(&w)) {
                Some(i) => Operand::Column(i),
                None => {
                    return Err(self.error(&format!(
                        "no column '{w}' (columns: {})",
                        self.columns.join(", ")
                    )));
                }
            },
            Tok::Sym(s) => {
                return Err(self.error(&format!("expected a column or a value, found '{s}'")));
            }
        };
        self.pos += 1;
        Ok(operand)
    }
}

impl Expr {
    /// Three-valued evaluation over a row; `None` is unknown.
    pub fn eval(&self, row: &[Val]) -> Option<bool> {
        let get = |o: &Operand| match o {
            Operand::Column(i) => row.get(*i).cloned().unwrap_or(Val::Null),
            Operand::Lit(v) => v.clone(),
        };
        match self {
            Expr::Or(parts) => {
                let mut unknown = false;
                for p in parts {
                    match p.eval(row) {
                        Some(true) => return Some(true),
                        None => unknown = true,
                        Some(false) => {}
                    }
                }
                if unknown { None } else { Some(false) }
            }
            Expr::And(parts) => {
                let mut unknown = false;
                for p in parts {
                    match p.eval(row) {
                        Some(false) => return Some(false),
                        None => unknown = true,
                        Some(true) => {}
                    }
                }
                if unknown { None } else { Some(true) }
            }
            Expr::Not(e) => e.eval(row).map(|b| !b),
            Expr::IsNull(o, negated) => Some((get(o) == Val::Null) != *negated),
            Expr::Truthy(o) => match get(o) {
                Val::Bool(b) => Some(b),
                Val::Null => None,
                _ => Some(false),
            },
            Expr::Cmp(a, op, b) => {
                let ord = compare(&get(a), &get(b))?;
                Some(match op {
                    Op::Eq => ord == Ordering::Equal,
                    Op::Ne => ord != Ordering::Equal,
                    Op::Lt => ord == Ordering::Less,
                    Op::Le => ord != Ordering::Greater,
                    Op::Gt => ord == Ordering::Greater,
                    Op::Ge => ord != Ordering::Less,
                })
            }
            Expr::In(o, list, negated) => {
                let v = get(o);
                if v == Val::Null {
                    return None;
                }
                let found = list
                    .iter()
                    .any(|item| compare(&v, &get(item)) == Some(Ordering::Equal));
                Some(found != *negated)
            }
        }
    }
}

impl Expr {
    /// The input columns the predicate reads, ascending without repeats: what the stage
    /// declares to the host (WIT 1.2 `projection`), so only these cells cross into it.
    pub fn columns(&self) -> Vec<usize> {
        let mut read = Vec::new();
        // Once per configure: a copy keeps one walk over the tree for both uses.
        self.clone().each_operand(&mut |o| {
            if let Operand::Column(i) = o {
                read.push(*i);
            }
        });
        read.sort_unstable();
        read.dedup();
        read
    }

    /// The same predicate over rows holding only the columns `read` names, in its order: each
    /// column reference becomes its position in `read` (a column not in `read` reads NULL).
    pub fn project(mut self, read: &[usize]) -> Expr {
        self.each_operand(&mut |o| {
            if let Operand::Column(i) = o {
                *i = read.binary_search(i).unwrap_or(usize::MAX);
            }
        });
        self
    }

    fn each_operand(&mut self, f: &mut impl FnMut(&mut Operand)) {
        match self {
            Expr::Or(parts) | Expr::And(parts) => {
                for p in parts {
                    p.each_operand(f);
                }
            }
            Expr::Not(e) => e.each_operand(f),
            Expr::Cmp(a, _, b) => {
                f(a);
                f(b);
            }
            Expr::IsNull(o, _) | Expr::Truthy(o) => f(o),
            Expr::In(o, list, _) => {
                f(o);
                list.iter_mut().for_each(&mut *f);
            }
        }
    }
}

/// Orders two values of the same kind; NULL or mixed kinds are unknown.
fn compare(a: &Val, b: &Val) -> Option<Ordering> {
    match (a, b) {
        (Val::Num(x), Val::Num(y)) => x.partial_cmp(y),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<String> {
        ["average_speed", "total_miles", "brand", "note"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }

    fn keep(pred: &str, row: &[Val]) -> Option<bool> {
        parse(pred, &cols()).unwrap().eval(row)
    }

    #[test]
    fn vehicle_example_and_friends() {
        let row = [
            Val::Num(80.0),
            Val::Num(150_000.0),
            Val::Str("BYD".into()),
            Val::Null,
        ];
        assert_eq!(
            keep("average_speed <= 90 && total_miles <= 200000", &row),
            Some(true)
        );
        assert_eq!(
            keep("average_speed > 90 || brand == 'BYD'", &row),
            Some(true)
        );
        assert_eq!(keep("!(brand in ('NIO', \"Geely\"))", &row), Some(true));
        assert_eq!(keep("brand not in ('BYD')", &row), Some(false));
        assert_eq!(keep("note is null && brand is not null", &row), Some(true));
        assert_eq!(keep("note == 'x'", &row), None);
        assert_eq!(keep("note == 'x' || total_miles < 1", &row), None);
        assert_eq!(keep("note == 'x' && total_miles < 1", &row), Some(false));
    }

    #[test]
    fn errors_give_the_position() {
        for (bad, at) in [
            ("average_speed <=", "position 17"),
            ("speed < 3", "position 1"),
            ("(a", "position 2"),
            ("brand in 'x'", "position 10"),
            ("brand == 'x", "position 10"),
            ("total_miles # 3", "position 13"),
            ("average_speed < 1 brand", "position 19"),
        ] {
            let err = parse(bad, &cols()).unwrap_err();
            assert!(err.starts_with(at), "{bad}: {err}");
        }
    }

    /// Found by fuzzing (tests/fuzz/regressions/filter_predicate/deep-parentheses): 60,000 `(`
    /// overflowed the stack (a SIGSEGV natively, a trap in the component).
    #[test]
    fn nesting_is_bounded() {
        let cols = ["a".to_owned()];
        let deep = |n: usize| format!("{}a == 1{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&deep(MAX_DEPTH), &cols).is_ok());
        let err = parse(&deep(MAX_DEPTH + 1), &cols).unwrap_err();
        assert!(err.contains("nest deeper than 64"), "{err}");
        assert!(parse(&"!".repeat(60_000), &cols).is_err());
        assert!(parse(&format!("{}a", "(".repeat(60_000)), &cols).is_err());
    }

    /// The stage passes only the columns a predicate reads (WIT 1.2 `projection`): the projected
    /// predicate over the projected row decides every row as the whole predicate over the
    /// whole row.
    #[test]
    fn a_projected_predicate_decides_as_the_whole_one() {
        let values = [
            Val::Null,
            Val::Num(80.0),
            Val::Num(95.0),
            Val::Num(250_000.0),
            Val::Str("BYD".into()),
            Val::Str("NIO".into()),
            Val::Bool(true),
        ];
        let preds = [
            ("average_speed <= 90 && total_miles <= 200000", vec![0, 1]),
            ("note is null || brand in ('NIO', 'BYD')", vec![2, 3]),
            ("!(total_miles > average_speed) && note", vec![0, 1, 3]),
            ("brand not in ('x', note) || brand == brand", vec![2, 3]),
            ("total_miles != 3", vec![1]),
        ];
        for (text, read) in preds {
            let whole = parse(text, &cols()).unwrap();
            assert_eq!(whole.columns(), read, "{text}");
            let projected = whole.clone().project(&read);
            // Every row over the values above, four columns wide.
            for n in 0..values.len().pow(4) {
                let row: Vec<Val> = (0..4)
                    .map(|c| values[n / values.len().pow(c) % values.len()].clone())
                    .collect();
                let cells: Vec<Val> = read.iter().map(|&i| row[i].clone()).collect();
                assert_eq!(
                    projected.eval(&cells),
                    whole.eval(&row),
                    "{text} on {row:?}"
                );
            }
        }
    }
}
