//! The SQL subset the emulator understands, parsed into [`Statement`]s. Anything outside it is a
//! parse error carrying `ODPS-0130161` and the 1-based line and column, never a panic.

use k2mc::maxcompute::{Column, ColumnType, PartitionSpec};

/// A parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    CreateTable {
        name: TableName,
        if_not_exists: bool,
        columns: Vec<Column>,
        partition_keys: Vec<Column>,
        comment: String,
        lifecycle: Option<i64>,
    },
    DropTable {
        name: TableName,
        if_exists: bool,
    },
    AddPartitions {
        name: TableName,
        if_not_exists: bool,
        partitions: Vec<PartitionSpec>,
    },
    /// `ALTER TABLE t ADD COLUMNS [IF NOT EXISTS] (c type, …)`: appended, nullable.
    AddColumns {
        name: TableName,
        if_not_exists: bool,
        columns: Vec<Column>,
    },
    ShowPartitions {
        name: TableName,
    },
    Select {
        name: TableName,
        projection: Projection,
        /// Equality predicates on partition columns, joined by AND.
        filter: Vec<(String, String)>,
        limit: Option<u64>,
    },
}

/// `[project.]table`.
#[derive(Debug, Clone, PartialEq)]
pub struct TableName {
    pub project: Option<String>,
    pub table: String,
}

/// What a SELECT returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    CountStar,
    All,
    Columns(Vec<String>),
}

/// A parse failure: an ODPS code and a message naming the position.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlError {
    pub code: &'static str,
    pub message: String,
}

impl SqlError {
    /// `ODPS-0130161:[line,col] Parse exception - …` as MaxCompute writes task results.
    pub fn to_result_text(&self) -> String {
        format!("{}:{}", self.code, self.message)
    }
}

pub const PARSE_ERROR: &str = "ODPS-0130161";

/// Parses one statement (a trailing `;` is allowed).
pub fn parse(sql: &str) -> Result<Statement, SqlError> {
    let tokens = tokenize(sql)?;
    let mut p = Parser {
        sql,
        tokens,
        pos: 0,
    };
    let stmt = p.statement()?;
    p.eat_sym(';');
    if p.pos < p.tokens.len() {
        return Err(p.error("unexpected trailing input"));
    }
    Ok(stmt)
}

struct Parser<'a> {
    sql: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &str) -> SqlError {
        let at = self.tokens.get(self.pos).map_or(self.sql.len(), |t| t.at);
        error_at(self.sql, at, reason)
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn kw(&mut self, kw: &str) -> Result<(), SqlError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.error(&format!("expected {kw}")))
        }
    }

    fn eat_sym(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Sym(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn sym(&mut self, c: char) -> Result<(), SqlError> {
        if self.eat_sym(c) {
            Ok(())
        } else {
            Err(self.error(&format!("expected '{c}'")))
        }
    }

    fn ident(&mut self) -> Result<String, SqlError> {
        match self.peek() {
            Some(Tok::Word(w) | Tok::Quoted(w)) => {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.error("expected a name")),
        }
    }

    fn literal(&mut self) -> Result<String, SqlError> {
        match self.peek() {
            Some(Tok::Str(s) | Tok::Num(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.error("expected a literal")),
        }
    }

    fn table_name(&mut self) -> Result<TableName, SqlError> {
        let first = self.ident()?;
        if self.eat_sym('.') {
            let table = self.ident()?;
            Ok(TableName {
                project: Some(first),
                table,
            })
        } else {
            Ok(TableName {
                project: None,
                table: first,
            })
        }
    }

    fn statement(&mut self) -> Result<Statement, SqlError> {
        if self.eat_kw("CREATE") {
            self.kw("TABLE")?;
            self.create_table()
        } else if self.eat_kw("DROP") {
            self.kw("TABLE")?;
            let if_exists = self.eat_kw("IF");
            if if_exists {
                self.kw("EXISTS")?;
            }
            Ok(Statement::DropTable {
                name: self.table_name()?,
                if_exists,
            })
        } else if self.eat_kw("ALTER") {
            self.kw("TABLE")?;
            let name = self.table_name()?;
            self.kw("ADD")?;
            if self.eat_kw("COLUMNS") {
                let if_not_exists = self.if_not_exists()?;
                return Ok(Statement::AddColumns {
                    name,
                    if_not_exists,
                    columns: self.column_list()?,
                });
            }
            let if_not_exists = self.if_not_exists()?;
            let mut partitions = Vec::new();
            while self.eat_kw("PARTITION") {
                partitions.push(self.partition_spec()?);
            }
            if partitions.is_empty() {
                return Err(self.error("expected PARTITION"));
            }
            Ok(Statement::AddPartitions {
                name,
                if_not_exists,
                partitions,
            })
        } else if self.eat_kw("SHOW") {
            self.kw("PARTITIONS")?;
            Ok(Statement::ShowPartitions {
                name: self.table_name()?,
            })
        } else if self.eat_kw("SELECT") {
            self.select()
        } else {
            Err(self.error("expected CREATE, DROP, ALTER, SHOW or SELECT"))
        }
    }

    fn if_not_exists(&mut self) -> Result<bool, SqlError> {
        if self.eat_kw("IF") {
            self.kw("NOT")?;
            self.kw("EXISTS")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn create_table(&mut self) -> Result<Statement, SqlError> {
        let if_not_exists = self.if_not_exists()?;
        let name = self.table_name()?;
        let columns = self.column_list()?;
        let mut comment = String::new();
        let mut partition_keys = Vec::new();
        let mut lifecycle = None;
        loop {
            if self.eat_kw("COMMENT") {
                comment = self.literal()?;
            } else if self.eat_kw("PARTITIONED") {
                self.kw("BY")?;
                partition_keys = self.column_list()?;
            } else if self.eat_kw("LIFECYCLE") {
                let n = self.literal()?;
                lifecycle = Some(
                    n.parse()
                        .map_err(|_| self.error("LIFECYCLE takes a whole number of days"))?,
                );
            } else {
                break;
            }
        }
        Ok(Statement::CreateTable {
            name,
            if_not_exists,
            columns,
            partition_keys,
            comment,
            lifecycle,
        })
    }

    fn column_list(&mut self) -> Result<Vec<Column>, SqlError> {
        self.sym('(')?;
        let mut columns = Vec::new();
        loop {
            let name = self.ident()?;
            let type_start = self.pos;
            let mut depth = 0i32;
            let mut text = String::new();
            while let Some(tok) = self.peek() {
                match tok {
                    Tok::Sym('<' | '(') => depth += 1,
                    Tok::Sym('>' | ')') if depth > 0 => depth -= 1,
                    Tok::Sym(',' | ')') if depth == 0 => break,
                    Tok::Word(w)
                        if depth == 0
                            && (w.eq_ignore_ascii_case("COMMENT")
                                || w.eq_ignore_ascii_case("NOT")) =>
                    {
                        break;
                    }
                    _ => {}
                }
                match tok {
                    Tok::Word(w) | Tok::Num(w) => text.push_str(w),
                    Tok::Quoted(w) => text.push_str(&format!("`{w}`")),
                    Tok::Sym(c) => text.push(*c),
                    Tok::Str(_) => return Err(self.error("unexpected string in a column type")),
                }
                self.pos += 1;
            }
            let ty = ColumnType::parse(&text).map_err(|e| {
                let at = self.tokens.get(type_start).map_or(0, |t| t.at);
                error_at(self.sql, at, &e.to_string())
            })?;
            let mut column = Column::new(name, ty);
            if self.eat_kw("NOT") {
                self.kw("NULL")?;
                column.nullable = false;
            }
            if self.eat_kw("COMMENT") {
                column.comment = self.literal()?;
            }
            columns.push(column);
            if !self.eat_sym(',') {
                break;
            }
        }
        self.sym(')')?;
        Ok(columns)
    }

    fn partition_spec(&mut self) -> Result<PartitionSpec, SqlError> {
        self.sym('(')?;
        let mut pairs = Vec::new();
        loop {
            let key = self.ident()?;
            self.sym('=')?;
            pairs.push((key, self.literal()?));
            if !self.eat_sym(',') {
                break;
            }
        }
        self.sym(')')?;
        Ok(PartitionSpec::new(pairs))
    }

    fn select(&mut self) -> Result<Statement, SqlError> {
        let projection = if self.is_kw("COUNT") {
            self.pos += 1;
            self.sym('(')?;
            if !self.eat_sym('*') && self.literal().is_err() {
                return Err(self.error("only count(*) is supported"));
            }
            self.sym(')')?;
            Projection::CountStar
        } else if self.eat_sym('*') {
            Projection::All
        } else {
            let mut cols = vec![self.ident()?];
            while self.eat_sym(',') {
                cols.push(self.ident()?);
            }
            Projection::Columns(cols)
        };
        self.kw("FROM")?;
        let name = self.table_name()?;
        let mut filter = Vec::new();
        if self.eat_kw("WHERE") {
            loop {
                let col = self.ident()?;
                self.sym('=')?;
                filter.push((col, self.literal()?));
                if !self.eat_kw("AND") {
                    break;
                }
            }
        }
        let mut limit = None;
        if self.eat_kw("LIMIT") {
            let n = self.literal()?;
            limit = Some(
                n.parse()
                    .map_err(|_| self.error("LIMIT takes a whole number"))?,
            );
        }
        Ok(Statement::Select {
            name,
            projection,
            filter,
            limit,
        })
    }
}

mod lex;
#[cfg(test)]
mod tests;

use lex::{Tok, Token, error_at, tokenize};
