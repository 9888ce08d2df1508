//! Canonicalisation rules, each on a small document. The comparison with independent
//! implementations (lxml, xmllint) on a corpus of CEB-shaped messages is in tests/ceb.rs.

use super::*;

fn c14n(xml: &str) -> String {
    canonicalize(&parse(&normalise_line_ends(xml)).unwrap())
}

#[test]
fn declaration_comments_and_outside_whitespace_go() {
    assert_eq!(
        c14n("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- c -->\n<a><!-- x --><b/></a>\n"),
        "<a><b></b></a>"
    );
}

#[test]
fn attributes_sorted_namespaces_first_and_escaped() {
    let xml = r#"<e xmlns:b="http://b" xmlns:a="http://a" b:z="1" a:y="2" x="&lt;&quot;&#9;&#10;" w="a
b" xmlns="http://d"/>"#;
    assert_eq!(
        c14n(xml),
        r#"<e xmlns="http://d" xmlns:a="http://a" xmlns:b="http://b" w="a b" x="&lt;&quot;&#x9;&#xA;" a:y="2" b:z="1"></e>"#
    );
}

#[test]
fn text_escaping_cdata_and_line_ends() {
    assert_eq!(
        c14n("<a>x &amp; y &gt; <![CDATA[<z> & q]]>\r\n&#13;</a>"),
        "<a>x &amp; y &gt; &lt;z&gt; &amp; q\n&#xD;</a>"
    );
}

#[test]
fn redundant_namespace_declarations_are_dropped() {
    let xml = r#"<a xmlns="http://x" xmlns:p="http://p"><b xmlns="http://x" xmlns:p="http://p"><c xmlns=""/></b></a>"#;
    assert_eq!(
        c14n(xml),
        r#"<a xmlns="http://x" xmlns:p="http://p"><b><c xmlns=""></c></b></a>"#
    );
    assert_eq!(c14n(r#"<a><b xmlns=""/></a>"#), "<a><b></b></a>");
}

#[test]
fn subtree_carries_inherited_namespaces() {
    let xml = r#"<r xmlns="http://d" xmlns:x="http://x" xml:lang="zh"><s><t a="1"/></s></r>"#;
    let doc = parse(xml).unwrap();
    assert_eq!(
        canonicalize_subtree(&doc, &[0, 0]).unwrap(),
        r#"<t xmlns="http://d" xmlns:x="http://x" a="1" xml:lang="zh"></t>"#
    );
}

#[test]
fn refusals_say_where() {
    for (xml, reason) in [
        ("<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>", "DOCTYPE"),
        ("<a><b></a>", ""),
        ("<a>&nope;</a>", "nope"),
        ("<a/><b/>", "second root"),
        ("text<a/>", "outside"),
        ("<a>", "not closed"),
    ] {
        let e = parse(xml).unwrap_err();
        assert!(e.reason.contains(reason), "{xml}: {e}");
        assert!(e.line >= 1 && e.column >= 1);
    }
    let e = parse("<a>\n  <b x='1' x='2'/></a>").unwrap_err();
    assert_eq!(e.line, 2, "{e}");
}

#[test]
fn nesting_is_bounded_and_says_so() {
    let nested = |d: usize| format!("{}{}", "<a>".repeat(d), "</a>".repeat(d));
    assert!(parse(&nested(MAX_DEPTH)).is_ok());
    let e = parse(&nested(MAX_DEPTH + 1)).unwrap_err();
    assert!(e.reason.contains("nested more than 256 levels"), "{e}");
    assert_eq!((e.line, e.column), (1, MAX_DEPTH * 3 + 1));
    let e = parse(&format!(
        "<r>{}</r>",
        "<a/>".repeat(5) + &"<b>".repeat(MAX_DEPTH)
    ))
    .unwrap_err();
    assert!(e.reason.contains("256"), "{e}");
}

/// A tree far deeper than the parser allows, built by hand: writing, searching and dropping it
/// must not recurse (each would overflow this 256 KB stack at this depth if it did).
#[test]
fn deep_trees_are_written_searched_and_dropped_without_recursion() {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let leaf = || Element {
                name: "a".into(),
                ns: Vec::new(),
                attrs: Vec::new(),
                children: Vec::new(),
                end_tag_at: 0,
                empty: false,
            };
            let mut root = leaf();
            for _ in 0..200_000 {
                let mut parent = leaf();
                parent.children.push(Node::Element(root));
                root = parent;
            }
            let doc = Document {
                prolog: Vec::new(),
                root,
                epilog: Vec::new(),
            };
            assert_eq!(canonicalize(&doc).len(), 200_001 * 7);
            assert!(!contains_element(&doc, "urn:x", "a"));
            assert_eq!(all_elements(&doc).len(), 200_001);
            drop(doc);
        })
        .unwrap()
        .join()
        .expect("no stack overflow");
}

#[test]
fn names_must_be_xml_names() {
    for bad in ["<v<//>", "<a><1b/></a>", "<a b<=\"1\"/>", "<a -x=\"1\"/>"] {
        let e = parse(bad).unwrap_err();
        assert!(e.reason.contains("name"), "{bad}: {e}");
    }
    assert!(
        parse("<ceb:CEB311Message xmlns:ceb=\"urn:c\" a.b-c_d=\"1\"><订单/></ceb:CEB311Message>")
            .is_ok()
    );
}
