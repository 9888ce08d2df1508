//! Canonical XML 1.0 (inclusive, without comments), what XML-DSig's `URI=""` reference and
//! `http://www.w3.org/TR/2001/REC-xml-c14n-20010315` mean. quick-xml tokenises; this module keeps
//! to what C14N needs: line-end and attribute-value normalisation, namespace declarations written
//! where they change, namespace then attribute ordering, C14N escaping, empty elements expanded,
//! comments dropped. A DOCTYPE is refused, so no entity is ever expanded.
//!
//! Hostile input (finding H2): elements nest at most [`MAX_DEPTH`] deep, and nothing here
//! recurses over the tree (writing, searching and dropping it walk an explicit stack), so no
//! document can exhaust a connection thread's stack.

use quick_xml::Reader;
use quick_xml::events::Event;
use std::collections::BTreeMap;
use std::fmt;

const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// How deep elements may nest (the root is depth 1). CEB messages nest fewer than 10 levels
/// (message, order, head or list, field); 256 leaves room for any real message and its
/// signature while refusing the deep documents that attack a parser.
pub const MAX_DEPTH: usize = 256;

/// Why a document was refused, with where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.reason
        )
    }
}

/// A parsed element.
#[derive(Debug)]
pub struct Element {
    /// The qualified name as written (`ceb:OrderHead`).
    pub name: String,
    /// Namespace declarations made on this element: prefix ("" for the default) → URI.
    pub ns: Vec<(String, String)>,
    /// Other attributes, qualified name → normalised value.
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
    /// Byte offset (in the normalised text) of the start of its end tag; for an empty element,
    /// of the `/>`.
    pub end_tag_at: usize,
    pub empty: bool,
}

#[derive(Debug)]
pub enum Node {
    Element(Element),
    Text(String),
    Comment,
    Pi(String, String),
}

/// Dropping a tree walks it with an explicit stack: the derived drop recurses once per level.
impl Drop for Element {
    fn drop(&mut self) {
        let mut pending = std::mem::take(&mut self.children);
        while let Some(node) = pending.pop() {
            if let Node::Element(mut e) = node {
                pending.append(&mut e.children);
            }
        }
    }
}

/// A parsed document: processing instructions before and after the root, and the root.
#[derive(Debug)]
pub struct Document {
    pub prolog: Vec<Node>,
    pub root: Element,
    pub epilog: Vec<Node>,
}

/// XML's own line-end normalisation (§2.11): CRLF and lone CR become LF.
pub fn normalise_line_ends(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

fn err_at(text: &str, offset: usize, reason: impl Into<String>) -> XmlError {
    let (line, column) = position(text, offset);
    XmlError {
        line,
        column,
        reason: reason.into(),
    }
}

/// Resolves one entity or character reference name (`amp`, `#x41`).
fn resolve_ref(name: &str) -> Option<String> {
    Some(match name {
        "amp" => "&".into(),
        "lt" => "<".into(),
        "gt" => ">".into(),
        "apos" => "'".into(),
        "quot" => "\"".into(),
        _ => {
            let code = if let Some(hex) = name.strip_prefix("#x") {
                u32::from_str_radix(hex, 16).ok()?
            } else if let Some(dec) = name.strip_prefix('#') {
                dec.parse().ok()?
            } else {
                return None;
            };
            let c = char::from_u32(code)?;
            if !is_xml_char(c) {
                return None;
            }
            c.to_string()
        }
    })
}

/// XML 1.0's Name production (§2.3): what an element or attribute name may be. quick-xml
/// takes any bytes up to whitespace or `>` as a name, so `<v<//>` would parse as an element
/// `v<` whose canonical form no parser reads back (found by tests/fuzz.rs).
fn is_xml_name(name: &str) -> bool {
    let start = |c: char| {
        matches!(c, ':' | 'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}'
            | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}'
            | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}'
            | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
            | '\u{10000}'..='\u{EFFFF}')
    };
    let mut chars = name.chars();
    chars.next().is_some_and(start)
        && chars.all(|c| {
            start(c)
                || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
        })
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Replaces references in `raw`; `attribute` also turns literal whitespace into spaces first
/// (attribute-value normalisation for CDATA attributes, §3.3.3).
fn unescape(raw: &str, attribute: bool) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        push_literal(&mut out, &rest[..i], attribute)?;
        let after = &rest[i + 1..];
        let end = after.find(';').ok_or("an '&' that starts no reference")?;
        let name = &after[..end];
        out.push_str(
            &resolve_ref(name).ok_or_else(|| format!("unknown or invalid reference &{name};"))?,
        );
        rest = &after[end + 1..];
    }
    push_literal(&mut out, rest, attribute)?;
    Ok(out)
}

fn push_literal(out: &mut String, s: &str, attribute: bool) -> Result<(), String> {
    for c in s.chars() {
        if !is_xml_char(c) {
            return Err(format!(
                "character U+{:04X} is not allowed in XML",
                c as u32
            ));
        }
        if attribute && c == '<' {
            return Err("'<' in an attribute value".into());
        }
        out.push(if attribute && matches!(c, '\t' | '\n' | '\r') {
            ' '
        } else {
            c
        });
    }
    Ok(())
}

/// Parses (already line-end-normalised) text into a tree.
pub fn parse(text: &str) -> Result<Document, XmlError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut prolog = Vec::new();
    let mut epilog = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader
            .read_event()
            .map_err(|e| err_at(text, reader.error_position() as usize, e.to_string()))?;
        let at = |reason: String| err_at(text, before, reason);
        match event {
            Event::Decl(_) => {
                if root.is_some() || !stack.is_empty() || !prolog.is_empty() {
                    return Err(at("an XML declaration must come first".into()));
                }
            }
            Event::DocType(_) => {
                return Err(at(
                    "a DOCTYPE is not accepted (no entity is ever expanded)".into()
                ));
            }
            Event::Start(e) | Event::Empty(e) => {
                let is_empty = text[..reader.buffer_position() as usize].ends_with("/>");
                if root.is_some() && stack.is_empty() {
                    return Err(at("a second root element".into()));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(at(format!(
                        "elements are nested more than {MAX_DEPTH} levels deep (the limit; CEB messages nest fewer than 10)"
                    )));
                }
                let name = std::str::from_utf8(e.name().as_ref())
                    .map_err(|_| at("a name is not UTF-8".into()))?
                    .to_string();
                if !is_xml_name(&name) {
                    return Err(at(format!("{name:?} is not an XML element name")));
                }
                let mut ns = Vec::new();
                let mut attrs = Vec::new();
                for a in e.attributes() {
                    let a = a.map_err(|err| at(err.to_string()))?;
                    let key = std::str::from_utf8(a.key.as_ref())
                        .map_err(|_| at("a name is not UTF-8".into()))?;
                    if !is_xml_name(key) {
                        return Err(at(format!("{key:?} is not an XML attribute name")));
                    }
                    let raw = std::str::from_utf8(&a.value)
                        .map_err(|_| at("a value is not UTF-8".into()))?;
                    let value =
                        unescape(raw, true).map_err(|r| at(format!("attribute {key}: {r}")))?;
                    if key == "xmlns" {
                        ns.push((String::new(), value));
                    } else if let Some(p) = key.strip_prefix("xmlns:") {
                        if value.is_empty() {
                            return Err(at(format!("xmlns:{p} cannot be undeclared in XML 1.0")));
                        }
                        ns.push((p.to_string(), value));
                    } else {
                        attrs.push((key.to_string(), value));
                    }
                }
                let el = Element {
                    name,
                    ns,
                    attrs,
                    children: Vec::new(),
                    end_tag_at: if is_empty {
                        reader.buffer_position() as usize - 2
                    } else {
                        0
                    },
                    empty: is_empty,
                };
                if is_empty {
                    close(el, &mut stack, &mut root);
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let Some(mut el) = stack.pop() else {
                    return Err(at("an end tag without a start tag".into()));
                };
                el.end_tag_at = before;
                close(el, &mut stack, &mut root);
            }
            Event::Text(t) => {
                let raw = t.decode().map_err(|e| at(e.to_string()))?;
                let value = unescape(&raw, false).map_err(at)?;
                match stack.last_mut() {
                    Some(parent) => push_text(parent, value),
                    None if value.trim().is_empty() => {}
                    None => return Err(at("text outside the root element".into())),
                }
            }
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| at(e.to_string()))?;
                let value = resolve_ref(&name)
                    .ok_or_else(|| at(format!("unknown or invalid reference &{name};")))?;
                match stack.last_mut() {
                    Some(parent) => push_text(parent, value),
                    None => return Err(at("a reference outside the root element".into())),
                }
            }
            Event::CData(c) => {
                let value = String::from_utf8(c.into_inner().into_owned())
                    .map_err(|_| at("CDATA is not UTF-8".into()))?;
                push_literal(&mut String::new(), &value, false).map_err(at)?;
                match stack.last_mut() {
                    Some(parent) => push_text(parent, value),
                    None => return Err(at("CDATA outside the root element".into())),
                }
            }
            Event::Comment(_) => {
                if let Some(parent) = stack.last_mut() {
                    parent.children.push(Node::Comment);
                }
            }
            Event::PI(pi) => {
                let raw = String::from_utf8(pi.into_inner().into_owned())
                    .map_err(|_| at("a processing instruction is not UTF-8".into()))?;
                let (target, data) = match raw.find(|c: char| c.is_whitespace()) {
                    Some(i) => (raw[..i].to_string(), raw[i..].trim_start().to_string()),
                    None => (raw.clone(), String::new()),
                };
                if target.eq_ignore_ascii_case("xml") {
                    return Err(at("an XML declaration must come first".into()));
                }
                let node = Node::Pi(target, data);
                match (stack.last_mut(), &root) {
                    (Some(parent), _) => parent.children.push(node),
                    (None, None) => prolog.push(node),
                    (None, Some(_)) => epilog.push(node),
                }
            }
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(err_at(
            text,
            text.len(),
            format!(
                "<{}> is not closed",
                stack.last().map(|e| e.name.as_str()).unwrap_or("")
            ),
        ));
    }
    let root = root.ok_or_else(|| err_at(text, text.len(), "no root element"))?;
    Ok(Document {
        prolog,
        root,
        epilog,
    })
}

fn push_text(parent: &mut Element, value: String) {
    if let Some(Node::Text(t)) = parent.children.last_mut() {
        t.push_str(&value);
    } else {
        parent.children.push(Node::Text(value));
    }
}

fn close(el: Element, stack: &mut [Element], root: &mut Option<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(Node::Element(el)),
        None => *root = Some(el),
    }
}

fn escape_text(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            _ => out.push(c),
        }
    }
}

fn escape_attr(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            _ => out.push(c),
        }
    }
}

/// Namespaces in scope: prefix → URI ("" is the default namespace).
type Scope = BTreeMap<String, String>;

/// An element being written: its namespaces in scope and those its output ancestors rendered,
/// and the index of its next child.
struct Open<'a> {
    el: &'a Element,
    scope: Scope,
    rendered: Scope,
    next: usize,
}

/// Writes `root`'s subtree, leaving out the element `skip` (the enveloped-signature transform),
/// with an explicit stack rather than recursion.
fn write_element(
    root: &Element,
    in_scope: &Scope,
    rendered: &Scope,
    inherited_xml_attrs: &[(String, String)],
    skip: Option<&Element>,
    out: &mut String,
) {
    let mut stack = vec![start_tag(
        root,
        in_scope,
        rendered,
        inherited_xml_attrs,
        out,
    )];
    while let Some(top) = stack.last_mut() {
        let el: &Element = top.el;
        let Some(child) = el.children.get(top.next) else {
            out.push_str("</");
            out.push_str(&el.name);
            out.push('>');
            stack.pop();
            continue;
        };
        top.next += 1;
        match child {
            Node::Element(c) if skip.is_some_and(|s| std::ptr::eq(s, c)) => {}
            Node::Element(c) => {
                let open = start_tag(c, &top.scope, &top.rendered, &[], out);
                stack.push(open);
            }
            Node::Text(t) => escape_text(t, out),
            Node::Comment => {}
            Node::Pi(target, data) => write_pi(target, data, out),
        }
    }
}

/// Writes an element's start tag: the namespace declarations that differ from what its output
/// ancestors rendered, then its attributes in C14N order.
fn start_tag<'a>(
    el: &'a Element,
    in_scope: &Scope,
    rendered: &Scope,
    inherited_xml_attrs: &[(String, String)],
    out: &mut String,
) -> Open<'a> {
    let mut scope = in_scope.clone();
    for (p, uri) in &el.ns {
        scope.insert(p.clone(), uri.clone());
    }
    let mut now_rendered = rendered.clone();
    let mut decls: Vec<(&String, &String)> = Vec::new();
    for (p, uri) in &scope {
        let before = rendered.get(p).map(String::as_str).unwrap_or("");
        if p.is_empty() && uri.is_empty() && before.is_empty() {
            continue; // xmlns="" where no default is in effect
        }
        if before != uri {
            decls.push((p, uri));
        }
    }
    for (p, uri) in &decls {
        now_rendered.insert((*p).clone(), (*uri).clone());
    }
    out.push('<');
    out.push_str(&el.name);
    for (p, uri) in decls {
        if p.is_empty() {
            out.push_str(" xmlns=\"");
        } else {
            out.push_str(" xmlns:");
            out.push_str(p);
            out.push_str("=\"");
        }
        escape_attr(uri, out);
        out.push('"');
    }
    // attributes sorted by namespace URI, then local name; unqualified ones first
    let mut attrs: Vec<(String, String, &str, &str)> = el
        .attrs
        .iter()
        .chain(
            inherited_xml_attrs
                .iter()
                .filter(|(k, _)| !el.attrs.iter().any(|(own, _)| own == k)),
        )
        .map(|(k, v)| {
            let (uri, local) = match k.split_once(':') {
                Some(("xml", l)) => (XML_NS.to_string(), l.to_string()),
                Some((p, l)) => (scope.get(p).cloned().unwrap_or_default(), l.to_string()),
                None => (String::new(), k.clone()),
            };
            (uri, local, k.as_str(), v.as_str())
        })
        .collect();
    attrs.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    for (_, _, k, v) in attrs {
        out.push(' ');
        out.push_str(k);
        out.push_str("=\"");
        escape_attr(v, out);
        out.push('"');
    }
    out.push('>');
    Open {
        el,
        scope,
        rendered: now_rendered,
        next: 0,
    }
}

fn write_pi(target: &str, data: &str, out: &mut String) {
    out.push_str("<?");
    out.push_str(target);
    if !data.is_empty() {
        out.push(' ');
        out.push_str(data);
    }
    out.push_str("?>");
}

/// The canonical form of the whole document, without comments.
pub fn canonicalize(doc: &Document) -> String {
    canonicalize_without(doc, None)
}

/// The canonical form of the whole document without the element `skip` (and its subtree): what
/// the enveloped-signature transform leaves of a document whose signature `skip` is.
pub fn canonicalize_without(doc: &Document, skip: Option<&Element>) -> String {
    let mut out = String::new();
    for node in &doc.prolog {
        if let Node::Pi(t, d) = node {
            write_pi(t, d, &mut out);
            out.push('\n');
        }
    }
    write_element(&doc.root, &Scope::new(), &Scope::new(), &[], skip, &mut out);
    for node in &doc.epilog {
        if let Node::Pi(t, d) = node {
            out.push('\n');
            write_pi(t, d, &mut out);
        }
    }
    out
}

/// The canonical form of one element as a document subset (its subtree), in its place: the
/// namespaces and `xml:*` attributes it inherits from its ancestors are written on it.
/// `path` is the child-element indexes from the root.
pub fn canonicalize_subtree(doc: &Document, path: &[usize]) -> Option<String> {
    canonicalize_subtree_without(doc, path, None)
}

/// [`canonicalize_subtree`] leaving out the element `skip` (the enveloped-signature transform).
pub fn canonicalize_subtree_without(
    doc: &Document,
    path: &[usize],
    skip: Option<&Element>,
) -> Option<String> {
    let mut scope = Scope::new();
    let mut xml_attrs: Vec<(String, String)> = Vec::new();
    let mut el = &doc.root;
    for &i in path {
        for (p, uri) in &el.ns {
            scope.insert(p.clone(), uri.clone());
        }
        for (k, v) in el.attrs.iter().filter(|(k, _)| k.starts_with("xml:")) {
            xml_attrs.retain(|(old, _)| old != k);
            xml_attrs.push((k.clone(), v.clone()));
        }
        el = el
            .children
            .iter()
            .filter_map(|n| match n {
                Node::Element(e) => Some(e),
                _ => None,
            })
            .nth(i)?;
    }
    let mut out = String::new();
    write_element(el, &scope, &Scope::new(), &xml_attrs, skip, &mut out);
    Some(out)
}

/// Every element of the document with the namespace URI and local name given, in document
/// order, found with an explicit stack.
pub fn find_elements<'a>(doc: &'a Document, ns_uri: &str, local: &str) -> Vec<&'a Element> {
    let mut found = Vec::new();
    let mut stack: Vec<(&Element, Scope)> = vec![(&doc.root, Scope::new())];
    while let Some((el, parent_scope)) = stack.pop() {
        let mut scope = parent_scope;
        for (p, uri) in &el.ns {
            scope.insert(p.clone(), uri.clone());
        }
        let (prefix, name) = el.name.split_once(':').unwrap_or(("", &el.name));
        if name == local && scope.get(prefix).map(String::as_str) == Some(ns_uri) {
            found.push(el);
        }
        // reversed, so that the stack yields them in document order
        for child in el.children.iter().rev() {
            if let Node::Element(e) = child {
                stack.push((e, scope.clone()));
            }
        }
    }
    found
}

/// Whether an element with that namespace URI and local name is anywhere in the document.
pub fn contains_element(doc: &Document, ns_uri: &str, local: &str) -> bool {
    !find_elements(doc, ns_uri, local).is_empty()
}

/// Every element in the document, in document order, found with an explicit stack.
pub fn all_elements(doc: &Document) -> Vec<&Element> {
    let mut found = Vec::new();
    let mut stack = vec![&doc.root];
    while let Some(el) = stack.pop() {
        found.push(el);
        for child in el.children.iter().rev() {
            if let Node::Element(e) = child {
                stack.push(e);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests;
