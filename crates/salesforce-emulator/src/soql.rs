//! SOQL subset (§4): lexer, parser and binder.
//!
//! Supported: `SELECT` fields (compound components, compound parents, one-level child-to-parent
//! paths such as `Account.Name`) or `COUNT()`, `FROM`, `WHERE` with `AND`/`OR`/`NOT` and
//! parentheses, comparisons (`= != <> < <= > >=`), `LIKE`, `IN`/`NOT IN`, literals (strings,
//! numbers, booleans, `null`, dates, datetimes, relative date literals), `ORDER BY` several fields
//! `ASC|DESC NULLS FIRST|LAST`, `LIMIT`, `OFFSET`.
//!
//! Errors follow §3.1: the message embeds the query, a caret line and `ERROR at Row:r:Column:c`,
//! with codes `MALFORMED_QUERY`, `INVALID_FIELD` and `INVALID_TYPE`.

use crate::ids;
use crate::schema::{FieldType, ObjectDef, Schema};
use crate::value::{self, Value};

/// A SOQL error: Salesforce error code plus the full message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct SoqlError {
    /// `MALFORMED_QUERY`, `INVALID_FIELD`, `INVALID_TYPE`, ...
    pub code: &'static str,
    /// Message with the caret block.
    pub message: String,
}

/// Parser switches (§9.6).
#[derive(Debug, Clone, Copy)]
pub struct SoqlOptions {
    /// Accept fractional seconds in datetime literals (not documented, used by Airbyte).
    pub fractional_seconds: bool,
    /// "Now" for relative date literals (ms).
    pub now_ms: i64,
    /// Fields gated by the §9.9 switch exist (see [`crate::schema::FieldDef::gated`]).
    pub gated_fields: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Date(String),
    DateTime(String),
    Comma,
    LParen,
    RParen,
    Colon,
    Op(&'static str),
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// Byte offset in the query.
    at: usize,
}

fn caret(query: &str, at: usize, text: &str) -> String {
    let at = at.min(query.len());
    let before = &query[..at];
    let row = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|p| p + 1).unwrap_or(0);
    let line_end = query[line_start..]
        .find('\n')
        .map(|p| p + line_start)
        .unwrap_or(query.len());
    let col = query[line_start..at].chars().count() + 1;
    format!(
        "\n{}\n{}^\nERROR at Row:{row}:Column:{col}\n{text}",
        &query[line_start..line_end],
        " ".repeat(col - 1)
    )
}

struct Lexer<'q> {
    q: &'q str,
    b: &'q [u8],
    pos: usize,
    opts: SoqlOptions,
}

impl<'q> Lexer<'q> {
    fn err(&self, at: usize, code: &'static str, text: &str) -> SoqlError {
        SoqlError {
            code,
            message: caret(self.q, at, text),
        }
    }

    fn tokens(mut self) -> Result<Vec<Token>, SoqlError> {
        let mut out = Vec::new();
        loop {
            while self.pos < self.b.len() && self.b[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            let at = self.pos;
            let Some(&c) = self.b.get(self.pos) else {
                out.push(Token { tok: Tok::Eof, at });
                return Ok(out);
            };
            let tok = match c {
                b',' => {
                    self.pos += 1;
                    Tok::Comma
                }
                b'(' => {
                    self.pos += 1;
                    Tok::LParen
                }
                b')' => {
                    self.pos += 1;
                    Tok::RParen
                }
                b':' => {
                    self.pos += 1;
                    Tok::Colon
                }
                b'=' => {
                    self.pos += 1;
                    Tok::Op("=")
                }
                b'!' if self.b.get(at + 1) == Some(&b'=') => {
                    self.pos += 2;
                    Tok::Op("!=")
                }
                b'<' | b'>' => {
                    let next = self.b.get(at + 1).copied();
                    self.pos += 1;
                    match (c, next) {
                        (b'<', Some(b'=')) => {
                            self.pos += 1;
                            Tok::Op("<=")
                        }
                        (b'<', Some(b'>')) => {
                            self.pos += 1;
                            Tok::Op("!=")
                        }
                        (b'>', Some(b'=')) => {
                            self.pos += 1;
                            Tok::Op(">=")
                        }
                        (b'<', _) => Tok::Op("<"),
                        _ => Tok::Op(">"),
                    }
                }
                b'\'' => Tok::Str(self.string(at)?),
                b'0'..=b'9' | b'-' | b'+' | b'.' => self.number_or_date(at)?,
                c if c.is_ascii_alphabetic() || c == b'_' => {
                    while self.pos < self.b.len()
                        && (self.b[self.pos].is_ascii_alphanumeric()
                            || matches!(self.b[self.pos], b'_' | b'.'))
                    {
                        self.pos += 1;
                    }
                    Tok::Ident(self.q[at..self.pos].to_string())
                }
                _ => {
                    let ch = self.q[at..].chars().next().unwrap_or(' ');
                    return Err(self.err(
                        at,
                        "MALFORMED_QUERY",
                        &format!("line 1:{} no viable alternative at character '{ch}'", at),
                    ));
                }
            };
            out.push(Token { tok, at });
        }
    }

    fn string(&mut self, at: usize) -> Result<String, SoqlError> {
        self.pos += 1;
        let mut s = String::new();
        loop {
            let Some(c) = self.q[self.pos..].chars().next() else {
                return Err(self.err(at, "MALFORMED_QUERY", "unterminated string literal"));
            };
            self.pos += c.len_utf8();
            match c {
                '\'' => return Ok(s),
                '\\' => {
                    let Some(e) = self.q[self.pos..].chars().next() else {
                        return Err(self.err(at, "MALFORMED_QUERY", "unterminated string literal"));
                    };
                    self.pos += e.len_utf8();
                    if matches!(e, '%' | '_') {
                        // `\%` and `\_` stay escaped for LIKE patterns.
                        s.push('\\');
                    }
                    s.push(match e {
                        'n' => '\n',
                        'r' => '\r',
                        't' => '\t',
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        '\'' | '"' | '\\' | '%' | '_' => e,
                        _ => {
                            return Err(self.err(
                                self.pos - 2,
                                "MALFORMED_QUERY",
                                &format!("Invalid string literal '{}'. Illegal character sequence '\\{e}' in string literal.", &self.q[at..]),
                            ));
                        }
                    });
                }
                _ => s.push(c),
            }
        }
    }

    fn number_or_date(&mut self, at: usize) -> Result<Tok, SoqlError> {
        let rest = &self.q[at..];
        let b = rest.as_bytes();
        let is_date = b.len() >= 10
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && b[5..7].iter().all(u8::is_ascii_digit)
            && b[7] == b'-'
            && b[8..10].iter().all(u8::is_ascii_digit);
        if is_date {
            if b.get(10) != Some(&b'T') {
                self.pos = at + 10;
                return Ok(Tok::Date(rest[..10].to_string()));
            }
            let mut end = 11;
            while end < b.len()
                && (b[end].is_ascii_digit()
                    || matches!(b[end], b':' | b'.' | b'+' | b'-' | b'Z' | b'z'))
            {
                end += 1;
            }
            let lit = &rest[..end];
            self.pos = at + end;
            let zone_ok = lit.ends_with('Z')
                || lit.ends_with('z')
                || lit[19.min(lit.len())..].contains(['+', '-']);
            if !zone_ok {
                // The `+` of an offset decoded as a space (§2.5 pitfall) leaves a zone-less literal.
                return Err(self.err(
                    self.pos,
                    "MALFORMED_QUERY",
                    &format!("line 1:{} no viable alternative at character ' '", self.pos),
                ));
            }
            if lit.contains('.') && !self.opts.fractional_seconds {
                return Err(self.err(at, "MALFORMED_QUERY", &format!("unexpected token: '{lit}'")));
            }
            return Ok(Tok::DateTime(lit.to_string()));
        }
        let mut end = 0;
        if matches!(b[0], b'-' | b'+') {
            end = 1;
        }
        while end < b.len()
            && (b[end].is_ascii_digit() || b[end] == b'.' || b[end] == b'e' || b[end] == b'E')
        {
            end += 1;
        }
        if end == 0 || (end == 1 && matches!(b[0], b'-' | b'+' | b'.')) {
            return Err(self.err(
                at,
                "MALFORMED_QUERY",
                &format!(
                    "line 1:{at} no viable alternative at character '{}'",
                    b[0] as char
                ),
            ));
        }
        self.pos = at + end;
        Ok(Tok::Num(rest[..end].to_string()))
    }
}

/// Comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=` / `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A resolved field reference: a field of the queried object, or a field of a parent through a
/// lookup (`Account.Name`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldRef {
    /// Field index on the queried object (for parents: the lookup field).
    pub field: usize,
    /// Parent object index and field index, for child-to-parent paths.
    pub parent: Option<(usize, usize)>,
    /// Canonical dotted name (`Name`, `Account.Name`).
    pub name: String,
    /// The name as written in the query (Bulk CSV header switch, §9.3).
    pub written: String,
    /// Field type of the final field.
    pub ty: FieldType,
}

/// A bound literal or relative range.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A plain value.
    Value(Value),
    /// A relative date literal as a half-open range in the field's unit (days for dates, ms for
    /// datetimes).
    Range(i64, i64),
}

/// Bound WHERE expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Pred {
    /// All must hold.
    And(Vec<Pred>),
    /// One must hold.
    Or(Vec<Pred>),
    /// Negation.
    Not(Box<Pred>),
    /// Comparison.
    Cmp(FieldRef, Op, Operand),
    /// `IN` / `NOT IN`.
    In(FieldRef, bool, Vec<Value>),
    /// `LIKE` (case-insensitive, `%` and `_`).
    Like(FieldRef, String),
}

/// One ORDER BY item.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderItem {
    /// Field.
    pub field: FieldRef,
    /// Descending?
    pub desc: bool,
    /// Nulls first? (default true, §4.2)
    pub nulls_first: bool,
}

/// A bound query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Object index in the schema.
    pub object: usize,
    /// Selected fields (empty for `COUNT()`).
    pub select: Vec<FieldRef>,
    /// `SELECT COUNT()`.
    pub count: bool,
    /// WHERE.
    pub filter: Option<Pred>,
    /// ORDER BY.
    pub order: Vec<OrderItem>,
    /// LIMIT.
    pub limit: Option<u64>,
    /// OFFSET.
    pub offset: u64,
}

/// The restriction Salesforce reports for an unfiltered `ContentDocumentLink` query (object
/// reference: "You can't run a query without filters against ContentDocumentLink"; §3.3
/// `MALFORMED_QUERY` "Implementation restriction ...").
pub const CONTENT_DOCUMENT_LINK_RESTRICTION: &str = "Implementation restriction: ContentDocumentLink requires a filter by a single Id on ContentDocumentId or LinkedEntityId using the equals operator or multiple Id's using the IN operator.";

/// True when a top-level conjunct of `filter` is `ContentDocumentId` / `LinkedEntityId` `= id` or
/// `IN (ids)` (not `!=`, not `NOT IN`, not under `OR` / `NOT`).
fn filters_link_by_id(def: &ObjectDef, filter: Option<&Pred>) -> bool {
    let keyed = |f: &FieldRef| {
        f.parent.is_none()
            && matches!(
                def.fields[f.field].name.as_str(),
                "ContentDocumentId" | "LinkedEntityId"
            )
    };
    let one = |p: &Pred| match p {
        Pred::Cmp(f, Op::Eq, Operand::Value(Value::Str(_))) => keyed(f),
        Pred::In(f, false, vals) => keyed(f) && !vals.is_empty(),
        _ => false,
    };
    match filter {
        Some(Pred::And(items)) => items.iter().any(one),
        Some(p) => one(p),
        None => false,
    }
}

struct Parser<'q> {
    q: &'q str,
    toks: Vec<Token>,
    i: usize,
    schema: &'q Schema,
    obj: usize,
    opts: SoqlOptions,
}

/// Parses and binds a SOQL query against the schema.
pub fn parse(q: &str, schema: &Schema, opts: SoqlOptions) -> Result<Query, SoqlError> {
    let toks = Lexer {
        q,
        b: q.as_bytes(),
        pos: 0,
        opts,
    }
    .tokens()?;
    let mut p = Parser {
        q,
        toks,
        i: 0,
        schema,
        obj: 0,
        opts,
    };
    p.query()
}

impl<'q> Parser<'q> {
    fn peek(&self) -> &Token {
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn err(&self, at: usize, code: &'static str, text: &str) -> SoqlError {
        SoqlError {
            code,
            message: caret(self.q, at, text),
        }
    }

    fn unexpected(&self, t: &Token) -> SoqlError {
        let shown = match &t.tok {
            Tok::Eof => "<EOF>".to_string(),
            _ => {
                let rest = &self.q[t.at..];
                rest.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
                    .next()
                    .filter(|s| !s.is_empty())
                    .unwrap_or(&rest[..rest.chars().next().map(char::len_utf8).unwrap_or(0)])
                    .to_string()
            }
        };
        self.err(
            t.at,
            "MALFORMED_QUERY",
            &format!("unexpected token: '{shown}'"),
        )
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), SoqlError> {
        if self.is_kw(kw) {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected(&self.peek().clone()))
        }
    }

    fn query(&mut self) -> Result<Query, SoqlError> {
        self.expect_kw("SELECT")?;
        // Collect the raw select list; bind after FROM.
        let mut raw: Vec<(String, usize)> = Vec::new();
        let mut count = false;
        loop {
            let t = self.next();
            match &t.tok {
                Tok::Ident(s)
                    if s.eq_ignore_ascii_case("COUNT") && self.peek().tok == Tok::LParen =>
                {
                    self.next();
                    let close = self.next();
                    if close.tok != Tok::RParen {
                        return Err(self.err(
                            close.at,
                            "MALFORMED_QUERY",
                            "Aggregate functions are not supported by this emulator except COUNT()",
                        ));
                    }
                    count = true;
                }
                Tok::Ident(s) if !s.eq_ignore_ascii_case("FROM") => raw.push((s.clone(), t.at)),
                _ => return Err(self.unexpected(&t)),
            }
            if self.peek().tok == Tok::Comma {
                self.next();
                continue;
            }
            break;
        }
        if count && !raw.is_empty() {
            return Err(self.err(
                raw[0].1,
                "MALFORMED_QUERY",
                "COUNT() cannot be combined with other fields",
            ));
        }
        self.expect_kw("FROM")?;
        let t = self.next();
        let Tok::Ident(name) = &t.tok else {
            return Err(self.unexpected(&t));
        };
        self.obj = self.schema.index(name).filter(|&o| self.schema.objects[o].queryable).ok_or_else(|| {
            self.err(
                t.at,
                "INVALID_TYPE",
                &format!("sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names."),
            )
        })?;
        let mut select = Vec::new();
        for (name, at) in &raw {
            let f = self.field(name, *at)?;
            if select
                .iter()
                .any(|s: &FieldRef| s.name.eq_ignore_ascii_case(&f.name))
            {
                return Err(self.err(
                    *at,
                    "MALFORMED_QUERY",
                    &format!("duplicate field selected: {}", f.name),
                ));
            }
            select.push(f);
        }
        let mut filter = None;
        if self.is_kw("WHERE") {
            self.next();
            filter = Some(self.or()?);
        }
        let mut order = Vec::new();
        if self.is_kw("ORDER") {
            self.next();
            self.expect_kw("BY")?;
            loop {
                let t = self.next();
                let Tok::Ident(name) = &t.tok else {
                    return Err(self.unexpected(&t));
                };
                let field = self.field(name, t.at)?;
                let fd = self.fdef(&field);
                if !fd.sortable {
                    return Err(self.err(
                        t.at,
                        "INVALID_FIELD",
                        &format!("field '{}' can not be sorted in a query call", field.name),
                    ));
                }
                let mut desc = false;
                if self.is_kw("ASC") {
                    self.next();
                } else if self.is_kw("DESC") {
                    self.next();
                    desc = true;
                }
                let mut nulls_first = true;
                if self.is_kw("NULLS") {
                    self.next();
                    if self.is_kw("FIRST") {
                        self.next();
                    } else if self.is_kw("LAST") {
                        self.next();
                        nulls_first = false;
                    } else {
                        return Err(self.unexpected(&self.peek().clone()));
                    }
                }
                order.push(OrderItem {
                    field,
                    desc,
                    nulls_first,
                });
                if self.peek().tok == Tok::Comma {
                    self.next();
                    continue;
                }
                break;
            }
        }
        let mut limit = None;
        let mut offset = 0;
        loop {
            if self.is_kw("LIMIT") {
                self.next();
                limit = Some(self.integer()?);
            } else if self.is_kw("OFFSET") {
                self.next();
                offset = self.integer()?;
            } else {
                break;
            }
        }
        let t = self.peek().clone();
        if t.tok != Tok::Eof {
            return Err(self.unexpected(&t));
        }
        let def = &self.schema.objects[self.obj];
        if def.name == "ContentDocumentLink" && !filters_link_by_id(def, filter.as_ref()) {
            return Err(SoqlError {
                code: "MALFORMED_QUERY",
                message: CONTENT_DOCUMENT_LINK_RESTRICTION.to_string(),
            });
        }
        Ok(Query {
            object: self.obj,
            select,
            count,
            filter,
            order,
            limit,
            offset,
        })
    }

    fn integer(&mut self) -> Result<u64, SoqlError> {
        let t = self.next();
        match &t.tok {
            Tok::Num(n) => n.parse().map_err(|_| self.unexpected(&t)),
            _ => Err(self.unexpected(&t)),
        }
    }

    fn fdef(&self, f: &FieldRef) -> &crate::schema::FieldDef {
        match f.parent {
            Some((po, pf)) => &self.schema.objects[po].fields[pf],
            None => &self.schema.objects[self.obj].fields[f.field],
        }
    }

    fn no_column(&self, at: usize, name: &str, def: &ObjectDef) -> SoqlError {
        self.err(
            at,
            "INVALID_FIELD",
            &format!("No such column '{name}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.", def.name),
        )
    }

    /// Resolves a (possibly dotted) field name.
    fn field(&self, name: &str, at: usize) -> Result<FieldRef, SoqlError> {
        let written = name.to_string();
        let def = &self.schema.objects[self.obj];
        let name = name
            .strip_prefix(&format!("{}.", def.name))
            .filter(|_| {
                name.len() > def.name.len() + 1
                    && name[..def.name.len()].eq_ignore_ascii_case(&def.name)
            })
            .unwrap_or(name);
        match name.split_once('.') {
            None => {
                let f = def
                    .index(name)
                    .filter(|&f| self.opts.gated_fields || !def.fields[f].gated)
                    .ok_or_else(|| self.no_column(at, name, def))?;
                Ok(FieldRef {
                    field: f,
                    parent: None,
                    name: def.fields[f].name.clone(),
                    written,
                    ty: def.fields[f].ty,
                })
            }
            Some((rel, rest)) => {
                let lookup = def
                    .fields
                    .iter()
                    .position(|f| {
                        f.relationship_name.as_deref().is_some_and(|r| r.eq_ignore_ascii_case(rel))
                            && f.reference_to.len() == 1
                            && (self.opts.gated_fields || !f.gated)
                    })
                    .ok_or_else(|| {
                        self.err(
                            at,
                            "INVALID_FIELD",
                            &format!("Didn't understand relationship '{rel}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."),
                        )
                    })?;
                let lf = &def.fields[lookup];
                let po = self
                    .schema
                    .index(&lf.reference_to[0])
                    .ok_or_else(|| self.no_column(at, name, def))?;
                let pdef = &self.schema.objects[po];
                if rest.contains('.') {
                    return Err(self.err(at, "MALFORMED_QUERY", "only one level of child-to-parent relationship is supported by this emulator"));
                }
                let pf = pdef
                    .index(rest)
                    .filter(|&f| self.opts.gated_fields || !pdef.fields[f].gated)
                    .ok_or_else(|| self.no_column(at, rest, pdef))?;
                Ok(FieldRef {
                    field: lookup,
                    parent: Some((po, pf)),
                    name: format!(
                        "{}.{}",
                        lf.relationship_name.clone().unwrap_or_default(),
                        pdef.fields[pf].name
                    ),
                    written,
                    ty: pdef.fields[pf].ty,
                })
            }
        }
    }

    fn or(&mut self) -> Result<Pred, SoqlError> {
        let mut items = vec![self.and()?];
        while self.is_kw("OR") {
            self.next();
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Pred::Or(items)
        })
    }

    fn and(&mut self) -> Result<Pred, SoqlError> {
        let mut items = vec![self.unary()?];
        while self.is_kw("AND") {
            self.next();
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Pred::And(items)
        })
    }

    fn unary(&mut self) -> Result<Pred, SoqlError> {
        if self.is_kw("NOT") {
            self.next();
            return Ok(Pred::Not(Box::new(self.unary()?)));
        }
        if self.peek().tok == Tok::LParen {
            self.next();
            let p = self.or()?;
            let t = self.next();
            if t.tok != Tok::RParen {
                return Err(self.unexpected(&t));
            }
            return Ok(p);
        }
        self.condition()
    }

    fn condition(&mut self) -> Result<Pred, SoqlError> {
        let t = self.next();
        let Tok::Ident(name) = &t.tok else {
            return Err(self.unexpected(&t));
        };
        let field = self.field(name, t.at)?;
        let fd = self.fdef(&field);
        if !fd.filterable {
            return Err(self.err(
                t.at,
                "INVALID_FIELD",
                &format!("field '{}' can not be filtered in a query call", field.name),
            ));
        }
        let op_tok = self.next();
        let negate_in = match &op_tok.tok {
            Tok::Ident(s) if s.eq_ignore_ascii_case("NOT") => {
                let t2 = self.next();
                if !matches!(&t2.tok, Tok::Ident(s) if s.eq_ignore_ascii_case("IN")) {
                    return Err(self.unexpected(&t2));
                }
                Some(true)
            }
            Tok::Ident(s) if s.eq_ignore_ascii_case("IN") => Some(false),
            _ => None,
        };
        if let Some(neg) = negate_in {
            let open = self.next();
            if open.tok != Tok::LParen {
                return Err(self.unexpected(&open));
            }
            let mut vals = Vec::new();
            loop {
                let lit = self.next();
                match self.literal(&field, &lit, true)? {
                    Operand::Value(v) => vals.push(v),
                    Operand::Range(..) => return Err(self.unexpected(&lit)),
                }
                let sep = self.next();
                match sep.tok {
                    Tok::Comma => continue,
                    Tok::RParen => break,
                    _ => return Err(self.unexpected(&sep)),
                }
            }
            return Ok(Pred::In(field, neg, vals));
        }
        if matches!(&op_tok.tok, Tok::Ident(s) if s.eq_ignore_ascii_case("LIKE")) {
            let lit = self.next();
            let Tok::Str(pat) = &lit.tok else {
                return Err(self.unexpected(&lit));
            };
            if !field.ty.is_text() {
                return Err(self.err(
                    op_tok.at,
                    "INVALID_FIELD",
                    &format!("invalid operator on {} field: LIKE", field.ty.wire()),
                ));
            }
            return Ok(Pred::Like(field, pat.clone()));
        }
        let op = match op_tok.tok {
            Tok::Op("=") => Op::Eq,
            Tok::Op("!=") => Op::Ne,
            Tok::Op("<") => Op::Lt,
            Tok::Op("<=") => Op::Le,
            Tok::Op(">") => Op::Gt,
            Tok::Op(">=") => Op::Ge,
            _ => return Err(self.unexpected(&op_tok)),
        };
        let lit = self.next();
        let operand = self.literal(&field, &lit, false)?;
        if matches!(operand, Operand::Value(Value::Null)) && !matches!(op, Op::Eq | Op::Ne) {
            return Err(self.err(
                lit.at,
                "MALFORMED_QUERY",
                &format!("invalid operator on null: {}", op_text(op)),
            ));
        }
        if matches!(
            field.ty,
            FieldType::Boolean | FieldType::Id | FieldType::Reference
        ) && !matches!(op, Op::Eq | Op::Ne)
            && field.ty == FieldType::Boolean
        {
            return Err(self.err(
                op_tok.at,
                "INVALID_FIELD",
                &format!("invalid operator on boolean field: {}", op_text(op)),
            ));
        }
        Ok(Pred::Cmp(field, op, operand))
    }

    /// Binds a literal to the field's type (§4.1: datetime literals only for datetime fields, date
    /// literals only for date fields, strings quoted only for text fields).
    fn literal(
        &mut self,
        field: &FieldRef,
        lit: &Token,
        in_list: bool,
    ) -> Result<Operand, SoqlError> {
        use FieldType as T;
        let ty = field.ty;
        let type_name = match ty {
            T::DateTime => "dateTime",
            T::Int => "int",
            T::Long => "long",
            T::Double | T::Currency | T::Percent => "double",
            T::Boolean => "boolean",
            T::Date => "date",
            T::Time => "time",
            _ => "string",
        };
        let quoted_msg = |quoted: bool| {
            format!(
                "value of filter criterion for field '{}' must be of type {type_name} and should {}be enclosed in quotes",
                field.name,
                if quoted { "" } else { "not " }
            )
        };
        let bad = |p: &Self, quoted: bool| p.err(lit.at, "INVALID_FIELD", &quoted_msg(quoted));
        match &lit.tok {
            Tok::Ident(s) if s.eq_ignore_ascii_case("null") => Ok(Operand::Value(Value::Null)),
            Tok::Ident(s) if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") => {
                if ty != T::Boolean {
                    return Err(bad(self, ty.is_text() || ty == T::Time));
                }
                Ok(Operand::Value(Value::Bool(s.eq_ignore_ascii_case("true"))))
            }
            Tok::Str(s) => {
                if ty == T::Id || ty == T::Reference {
                    return match ids::to18(s) {
                        Some(id) => Ok(Operand::Value(Value::str(id))),
                        None if s.is_empty() => Ok(Operand::Value(Value::str(""))),
                        None => Err(self.err(
                            lit.at,
                            "INVALID_QUERY_FILTER_OPERATOR",
                            &format!("invalid ID field: {s}"),
                        )),
                    };
                }
                if ty == T::Time {
                    return value::parse_time(s)
                        .map(|t| Operand::Value(Value::Time(t)))
                        .ok_or_else(|| bad(self, true));
                }
                if !ty.is_text() && ty != T::AnyType {
                    return Err(bad(self, false));
                }
                Ok(Operand::Value(Value::str(s.as_str())))
            }
            Tok::Num(n) => match ty {
                T::Int | T::Long => n
                    .parse::<i64>()
                    .map(|i| Operand::Value(Value::Int(i)))
                    .or_else(|_| n.parse::<f64>().map(|d| Operand::Value(Value::Double(d))))
                    .map_err(|_| self.unexpected(lit)),
                T::Double | T::Currency | T::Percent => n
                    .parse::<f64>()
                    .map(|d| Operand::Value(Value::Double(d)))
                    .map_err(|_| self.unexpected(lit)),
                _ => Err(bad(self, ty.is_text() || ty == T::Time)),
            },
            Tok::Date(d) => {
                if ty != T::Date {
                    return Err(bad(self, ty.is_text() || ty == T::Time));
                }
                value::parse_date(d)
                    .map(|d| Operand::Value(Value::Date(d)))
                    .ok_or_else(|| {
                        self.err(
                            lit.at,
                            "MALFORMED_QUERY",
                            &format!("line 1:{} Invalid date: {d}", lit.at),
                        )
                    })
            }
            Tok::DateTime(d) => {
                if ty != T::DateTime {
                    return Err(bad(self, ty.is_text() || ty == T::Time));
                }
                value::parse_datetime(d)
                    .map(|ms| Operand::Value(Value::DateTime(ms)))
                    .ok_or_else(|| {
                        self.err(
                            lit.at,
                            "MALFORMED_QUERY",
                            &format!("line 1:{} Invalid datetime: {d}", lit.at),
                        )
                    })
            }
            Tok::Ident(s) if !in_list => {
                let (lo_days, hi_days) = self.relative(s, lit)?;
                match ty {
                    T::Date => Ok(Operand::Range(lo_days, hi_days)),
                    T::DateTime => Ok(Operand::Range(lo_days * 86_400_000, hi_days * 86_400_000)),
                    _ => Err(bad(self, ty.is_text())),
                }
            }
            _ => Err(self.unexpected(lit)),
        }
    }

    /// Relative date literals (SOQL-DATES): half-open day ranges in UTC.
    fn relative(&mut self, s: &str, lit: &Token) -> Result<(i64, i64), SoqlError> {
        let today = self.opts.now_ms.div_euclid(86_400_000);
        let upper = s.to_ascii_uppercase();
        let n = |p: &mut Self| -> Result<i64, SoqlError> {
            let c = p.next();
            if c.tok != Tok::Colon {
                return Err(p.unexpected(&c));
            }
            let t = p.next();
            match &t.tok {
                Tok::Num(n) => n.parse::<i64>().map_err(|_| p.unexpected(&t)),
                _ => Err(p.unexpected(&t)),
            }
        };
        Ok(match upper.as_str() {
            "TODAY" => (today, today + 1),
            "YESTERDAY" => (today - 1, today),
            "TOMORROW" => (today + 1, today + 2),
            "LAST_N_DAYS" => {
                let k = n(self)?;
                (today - k, today + 1)
            }
            "NEXT_N_DAYS" => {
                let k = n(self)?;
                (today + 1, today + 1 + k)
            }
            _ => return Err(self.unexpected(lit)),
        })
    }
}

fn op_text(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Ne => "!=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Gt => ">",
        Op::Ge => ">=",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> SoqlOptions {
        SoqlOptions {
            fractional_seconds: true,
            now_ms: 1_700_000_000_000,
            gated_fields: false,
        }
    }

    fn p(q: &str) -> Result<Query, SoqlError> {
        parse(q, &Schema::standard(), opts())
    }

    #[test]
    fn parses_the_replication_shape() {
        let q = p("SELECT Id, Name, SystemModstamp FROM Account WHERE SystemModstamp >= 2024-01-01T00:00:00Z AND SystemModstamp < 2024-01-31T00:00:00.000+00:00 ORDER BY SystemModstamp ASC LIMIT 50000").unwrap();
        assert_eq!(q.select.len(), 3);
        assert_eq!(q.limit, Some(50000));
        let Some(Pred::And(items)) = q.filter else {
            panic!()
        };
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn errors_carry_caret_and_codes() {
        let e = p("SELECT Nope__c FROM Account").unwrap_err();
        assert_eq!(e.code, "INVALID_FIELD");
        assert!(e.message.starts_with("\nSELECT Nope__c FROM Account\n       ^\nERROR at Row:1:Column:8\nNo such column 'Nope__c' on entity 'Account'."), "{}", e.message);
        let e = p("SELECT Id FROM Nope").unwrap_err();
        assert_eq!(e.code, "INVALID_TYPE");
        let e = p("SELECT Id FROM Account WHERE").unwrap_err();
        assert_eq!(e.code, "MALFORMED_QUERY");
        assert!(e.message.ends_with("unexpected token: '<EOF>'"));
        let e = p("SELECT Id FROM Account WHERE CreatedDate > 2024-01-01").unwrap_err();
        assert_eq!(e.code, "INVALID_FIELD");
        assert!(e.message.contains("must be of type dateTime"));
        let e = p("SELECT Id FROM Contact WHERE Birthdate > 2024-01-01T00:00:00Z").unwrap_err();
        assert_eq!(e.code, "INVALID_FIELD");
        // `+` decoded as a space leaves "00:00" behind.
        let e = p("SELECT Id FROM Account WHERE SystemModstamp > 2024-01-01T00:00:00 00:00")
            .unwrap_err();
        assert_eq!(e.code, "MALFORMED_QUERY");
        assert!(e.message.contains("no viable alternative at character ' '"));
    }

    #[test]
    fn fractional_seconds_are_a_switch() {
        let strict = SoqlOptions {
            fractional_seconds: false,
            ..opts()
        };
        assert!(
            parse(
                "SELECT Id FROM Account WHERE SystemModstamp > 2024-01-01T00:00:00.000Z",
                &Schema::standard(),
                strict
            )
            .is_err()
        );
        assert!(
            p("SELECT Id FROM Account WHERE SystemModstamp > 2024-01-01T00:00:00.000Z").is_ok()
        );
    }

    #[test]
    fn parent_paths_and_relative_dates_bind() {
        let q = p("SELECT Id, Account.Name FROM Contact WHERE CreatedDate = LAST_N_DAYS:7 AND Name LIKE 'a%' AND Id IN ('0038d0000000001') ORDER BY Name DESC NULLS LAST, Id").unwrap();
        assert_eq!(q.select[1].name, "Account.Name");
        assert!(!q.order[0].nulls_first && q.order[0].desc);
    }
}
