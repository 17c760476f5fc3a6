use super::*;

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

#[test]
fn names_normalize_as_pep_503_says() {
    for (name, want) in [
        ("Django", "django"),
        ("argon2-cffi", "argon2-cffi"),
        ("argon2_cffi", "argon2-cffi"),
        ("zope.interface", "zope-interface"),
        ("Foo.._-Bar", "foo-bar"),
        ("nvidia-cudnn-cu12", "nvidia-cudnn-cu12"),
        ("typing_extensions", "typing-extensions"),
    ] {
        assert_eq!(normalize(name), want, "{name}");
    }
}

#[test]
fn hrefs_resolve_against_the_page_and_lose_the_fragment() {
    let page = url("https://user:pw@example.org/root/simple/six/");
    let (u, sha) = resolve(&page, "../../packages/six-1.17.0.whl#sha256=ABCD").unwrap();
    assert_eq!(
        u.as_str(),
        "https://user:pw@example.org/root/packages/six-1.17.0.whl"
    );
    assert_eq!(sha.as_deref(), Some("abcd"));
    let (u, sha) = resolve(&page, "six-1.17.0.whl").unwrap();
    assert_eq!(
        u.as_str(),
        "https://user:pw@example.org/root/simple/six/six-1.17.0.whl"
    );
    assert_eq!(sha, None);
    let (u, _) = resolve(&page, "https://files.example.com/p/six.whl#md5=00").unwrap();
    assert_eq!(u.as_str(), "https://files.example.com/p/six.whl");
    let (u, _) = resolve(&page, "/packages/a.whl").unwrap();
    assert_eq!(u.as_str(), "https://user:pw@example.org/packages/a.whl");
}

#[test]
fn pep_691_json_pages_parse() {
    let page = url("https://pypi.example/simple/six/");
    let body = br#"{
        "meta": {"api-version": "1.1"},
        "name": "six",
        "files": [
            {"filename": "six-1.17.0-py2.py3-none-any.whl",
             "url": "https://files.example/packages/six-1.17.0-py2.py3-none-any.whl",
             "hashes": {"sha256": "4721f391", "md5": "x"},
             "requires-python": ">=2.7", "size": 11050, "yanked": false},
            {"filename": "six-1.17.0.tar.gz",
             "url": "../../packages/six-1.17.0.tar.gz#sha256=beef",
             "hashes": {}}
        ]
    }"#;
    let files = parse_json(body, &page).unwrap();
    assert_eq!(
        files,
        [
            IndexFile {
                filename: "six-1.17.0-py2.py3-none-any.whl".into(),
                url: url("https://files.example/packages/six-1.17.0-py2.py3-none-any.whl"),
                sha256: Some("4721f391".into()),
                size: Some(11050),
            },
            IndexFile {
                filename: "six-1.17.0.tar.gz".into(),
                url: url("https://pypi.example/packages/six-1.17.0.tar.gz"),
                sha256: Some("beef".into()),
                size: None,
            },
        ]
    );
    assert!(parse_json(b"<html></html>", &page).is_err());
}

#[test]
fn pep_503_html_pages_parse() {
    let page = url("https://mirror.example/simple/six/");
    let body = r#"<!DOCTYPE html>
<html><head><title>Links for six</title></head>
<body><h1>Links for six</h1>
<a href="https://files.example/six-1.16.0-py2.py3-none-any.whl#sha256=1e61c3" data-requires-python="&gt;=2.7">six-1.16.0-py2.py3-none-any.whl</a><br/>
<A HREF='../../packages/six-1.17.0-py2.py3-none-any.whl#sha256=4721f391&amp;x=1'>
  six-1.17.0-py2.py3-none-any.whl </A><br/>
<a data-yanked="" href=six-0.9.tar.gz>six-0.9.tar.gz</a>
<abbr title="not a link">x</abbr>
</body></html>"#;
    let files = parse_html(body, &page);
    let got: Vec<(&str, &str, Option<&str>)> = files
        .iter()
        .map(|f| (f.filename.as_str(), f.url.as_str(), f.sha256.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "six-1.16.0-py2.py3-none-any.whl",
                "https://files.example/six-1.16.0-py2.py3-none-any.whl",
                Some("1e61c3")
            ),
            (
                "six-1.17.0-py2.py3-none-any.whl",
                "https://mirror.example/packages/six-1.17.0-py2.py3-none-any.whl",
                Some("4721f391")
            ),
            (
                "six-0.9.tar.gz",
                "https://mirror.example/simple/six/six-0.9.tar.gz",
                None
            ),
        ]
    );
}

#[test]
fn html_pages_honour_base_and_entities() {
    let page = url("https://links.example/find/");
    let body = r#"<html><head><base href="https://cdn.example/whl/"></head>
<a href="torch-2.6.0%2Bcu124-cp311-cp311-linux_x86_64.whl">torch-2.6.0+cu124-cp311-cp311-linux_x86_64.whl</a>
<a href="a&amp;b.whl"></a>"#;
    let files = parse_html(body, &page);
    assert_eq!(files.len(), 2);
    assert_eq!(
        files[0].url.as_str(),
        "https://cdn.example/whl/torch-2.6.0%2Bcu124-cp311-cp311-linux_x86_64.whl"
    );
    assert_eq!(
        files[0].filename,
        "torch-2.6.0+cu124-cp311-cp311-linux_x86_64.whl"
    );
    // No link text: the file name is the URL's last segment.
    assert_eq!(files[1].filename, "a&b.whl");
    assert_eq!(decode_entities("&lt;&#62;&#x3D;&bogus;&"), "<>=&bogus;&");
}

#[test]
fn pip_config_list_parses_with_pips_precedence() {
    let listed = "\
:env:.find-links='/opt/wheels'
:env:.default-timeout='180'
global.index-url='https://global.example/simple'
global.extra-index-url='https://a.example/simple\\nhttps://b.example/simple'
install.index_url=\"https://install.example/simple\"
download.cert='/etc/ssl/bundle.pem'
global.cert='/etc/ssl/other.pem'
not a setting
";
    let config = PipConfig::parse(listed);
    assert_eq!(
        config.get("index-url"),
        Some("https://install.example/simple")
    );
    assert_eq!(config.get("cert"), Some("/etc/ssl/bundle.pem"));
    assert_eq!(config.get("find-links"), Some("/opt/wheels"));
    assert_eq!(
        config.get("extra-index-url"),
        Some("https://a.example/simple\nhttps://b.example/simple")
    );
    assert_eq!(config.get("proxy"), None);

    let index = IndexConfig::from_settings(|_| None, &config);
    let urls: Vec<&str> = index.indexes.iter().map(Url::as_str).collect();
    assert_eq!(
        urls,
        [
            "https://install.example/simple/",
            "https://a.example/simple/",
            "https://b.example/simple/"
        ]
    );
    assert_eq!(
        index.find_links,
        [FindLinks::Folder(PathBuf::from("/opt/wheels"))]
    );
    assert_eq!(index.cert, Some(PathBuf::from("/etc/ssl/bundle.pem")));
    assert_eq!(index.timeout, Duration::from_secs(180));
}

#[test]
fn the_environment_wins_and_pypi_is_the_default() {
    let empty = PipConfig::default();
    let index = IndexConfig::from_settings(|_| None, &empty);
    assert_eq!(index.indexes, [url(PYPI)]);
    assert!(index.find_links.is_empty());
    assert_eq!(index.timeout, Duration::from_secs(15));

    let config = PipConfig::parse("global.index-url='https://config.example/simple/'\n");
    let env = |k: &str| match k {
        "PIP_INDEX_URL" => Some("https://u:p%40ss@env.example/simple".to_string()),
        "PIP_EXTRA_INDEX_URL" => Some(" https://x.example/s  relative/dir ".to_string()),
        "PIP_FIND_LINKS" => {
            Some("/opt/wheels file:///srv/wheels https://links.example/torch.html".to_string())
        }
        "PIP_TIMEOUT" => Some("2.5".to_string()),
        _ => None,
    };
    let index = IndexConfig::from_settings(env, &config);
    let urls: Vec<&str> = index.indexes.iter().map(Url::as_str).collect();
    assert_eq!(
        urls,
        [
            "https://u:p%40ss@env.example/simple/",
            "https://x.example/s/"
        ]
    );
    assert_eq!(index.unsupported, ["relative/dir"]);
    assert_eq!(
        index.find_links,
        [
            FindLinks::Folder(PathBuf::from("/opt/wheels")),
            FindLinks::Folder(PathBuf::from("/srv/wheels")),
            FindLinks::Page(url("https://links.example/torch.html")),
        ]
    );
    assert_eq!(index.timeout, Duration::from_millis(2500));
    // The password never shows.
    assert!(!index.describe().contains("p%40ss"), "{}", index.describe());
    assert!(index
        .describe()
        .contains("https://u:****@env.example/simple/"));

    let none = IndexConfig::from_settings(
        |k| (k == "PIP_NO_INDEX").then(|| "yes".to_string()),
        &config,
    );
    assert!(none.indexes.is_empty());
}

#[test]
fn find_links_folders_serve_exact_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("six-1.17.0-py2.py3-none-any.whl"), b"x").unwrap();
    let config = IndexConfig::from_settings(
        |k| (k == "PIP_FIND_LINKS").then(|| format!("/nonexistent {}", dir.path().display())),
        &PipConfig::default(),
    );
    assert_eq!(
        config.local("six-1.17.0-py2.py3-none-any.whl"),
        Some(dir.path().join("six-1.17.0-py2.py3-none-any.whl"))
    );
    assert_eq!(config.local("six-1.17.0-py3-none-any.whl"), None);
}

#[test]
fn credentials_follow_to_files_on_the_index_host_only() {
    let config = IndexConfig::from_settings(
        |k| (k == "PIP_INDEX_URL").then(|| "https://me:secret@idx.example/simple".to_string()),
        &PipConfig::default(),
    );
    let index = Index::new(config).unwrap();
    let auth = |u: &str| {
        index
            .get(&url(u))
            .build()
            .unwrap()
            .headers()
            .get(reqwest::header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_string())
    };
    // base64("me:secret")
    let basic = Some("Basic bWU6c2VjcmV0".to_string());
    assert_eq!(auth("https://idx.example/packages/a.whl"), basic);
    assert_eq!(auth("https://other.example/packages/a.whl"), None);
    assert_eq!(auth("http://idx.example/packages/a.whl"), None);
}
