//! Write the seed corpora of the fuzz targets: `cargo run -p stowage-fuzz-bodies --example
//! seeds -- fuzz/corpus`. The inputs are the fixtures of the parsers' unit tests, put in each
//! target's input form, plus one input per error variant the tests name; fuzzing grows them
//! and `cargo fuzz cmin` keeps what adds coverage (what `fuzz/run` does).

use std::path::Path;

fn main() {
    let out = std::env::args().nth(1).expect("usage: seeds DIR");
    let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let d512 = format!("sha512:{}", "a".repeat(128));
    let mut all: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
    let t = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();

    all.push((
        "name",
        t(&[
            "library/alpine",
            "a",
            "team/app/x",
            "a__b",
            "a--b",
            "A",
            "a/",
            "a..b",
            "-a",
            &"a".repeat(256),
        ]),
    ));
    all.push((
        "reference",
        t(&[
            "latest",
            "v1.0.0",
            "_x",
            &d('0'),
            ".a",
            "bad tag",
            "sha256:totallywrong",
            &format!("md5:{}", "a".repeat(32)),
        ]),
    ));
    all.push((
        "digest",
        t(&[
            &d('e'),
            &d512,
            "sha256:abc",
            "md5:abcd",
            "SHA256:x",
            "sha256:",
            "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
        ]),
    ));
    all.push((
        "range",
        t(&[
            "100\nbytes=0-9",
            "100\nbytes=90-200",
            "100\nbytes=-10",
            "100\nbytes=100-",
            "100\nitems=0-1",
            "100\nbytes=0-1,5-6",
            "100\nbytes=5-1",
            "c0-99",
            "cbytes 0-99/100",
            "cbytes=0-99",
            "c5-1",
            "c0-18446744073709551615",
            "cx",
        ]),
    ));
    let image = |mt: &str| {
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":10,"urls":["https://x/y"]}}]}}"#,
            d('a'),
            d('b')
        )
    };
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":7,"platform":{{"os":"linux"}}}}],"subject":{{"mediaType":"x","digest":"{}","size":1}}}}"#,
        d('c'),
        d('d')
    );
    all.push((
        "manifest",
        t(&[
            &format!("application/vnd.oci.image.manifest.v1+json\n{}", image(r#""mediaType":"application/vnd.oci.image.manifest.v1+json","#)),
            &format!("\n{}", image("")),
            &format!("application/vnd.docker.distribution.manifest.v2+json\n{}", image("")),
            &format!("application/vnd.oci.image.index.v1+json\n{index}"),
            &format!("application/json; charset=utf-8\n{index}"),
            "application/vnd.docker.distribution.manifest.v1+prettyjws\n{}",
            "\n{\"schemaVersion\":1,\"name\":\"x\"}",
            "\n{\"schemaVersion\":1,\"fsLayers\":5}",
            "\n{\"schemaVersion\":3}",
            "\nnot json",
            &format!("application/vnd.docker.distribution.manifest.v2+json\n{}", image(r#""mediaType":"application/vnd.oci.image.manifest.v1+json","#)),
            "\n{\"schemaVersion\":2,\"mediaType\":\"text/plain\"}",
            "\n{\"schemaVersion\":2}",
            "\n{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"layers\":[]}",
            "\n{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\"}",
            "\n{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"manifests\":[]}",
            "\n{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\"}",
            &format!("\n{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{{\"mediaType\":\"x\",\"digest\":\"{}\",\"size\":1}}}}", d('a')),
            &format!("\n{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"config\":{{\"mediaType\":\"x\",\"digest\":\"{}\",\"size\":1}}}}", d('a')),
        ]),
    ));
    let name_digest = format!("GET\n/v2/team/app/blobs/{}\nRange: bytes=0-9", d('a'));
    all.push((
        "routes",
        t(&[
            "GET\n/v2/",
            "HEAD\n/v2",
            "GET\n/v2/_catalog?n=10&last=a",
            "GET\n/v2/_catalog?n=x",
            "GET\n/v2/team/app/tags/list?n=2",
            "GET\n/v2/team/app/manifests/latest",
            "PUT\n/v2/team/app/manifests/v1?tag=a&tag=b\nContent-Type: application/vnd.oci.image.manifest.v1+json",
            "PUT\n/v2/team/app/manifests/v1?tag=-bad",
            "DELETE\n/v2/team/app/manifests/bad%20tag",
            "PUT\n/v2/team/app/manifests/bad%20tag",
            "GET\n/v2/team/app/manifests/sha256:abc",
            "PUT\n/v2/team/app/manifests/sha256:abc",
            &name_digest,
            &format!("DELETE\n/v2/team/app/blobs/{}", d('a')),
            "GET\n/v2/Team/app/tags/list",
            "GET\n/v2/team/app/blobs/sha256%3Azz",
            "GET\n/v2/team/%zz/tags/list",
            &format!("POST\n/v2/team/app/blobs/uploads/?digest={}\nContent-Length: 3", d('b')),
            &format!("POST\n/v2/team/app/blobs/uploads/?mount={}&from=other/repo", d('b')),
            "POST\n/v2/team/app/blobs/uploads/?mount=sha256:x&from=Bad",
            "POST\n/v2/team/app/blobs/uploads/?digest-algorithm=sha512",
            "POST\n/v2/team/app/blobs/uploads/?digest-algorithm=md5",
            "POST\n/v2/team/app/blobs/uploads/\nContent-Length: x",
            "PATCH\n/v2/team/app/blobs/uploads/abc-123\nContent-Range: 0-9\nContent-Length: 10",
            "PATCH\n/v2/team/app/blobs/uploads/abc-123\nContent-Range: 9-0",
            &format!("PUT\n/v2/team/app/blobs/uploads/abc-123?digest={}", d('c')),
            "PUT\n/v2/team/app/blobs/uploads/abc-123",
            "GET\n/v2/team/app/blobs/uploads/ABC",
            "DELETE\n/v2/team/app/blobs/uploads/abc",
            "POST\n/v2/team/app/tags/list",
            &format!("GET\n/v2/team/app/referrers/{}?artifactType=x", d('d')),
            "GET\n/auth/token?scope=repository:a:pull&service=x",
            "PUT\n/auth/token",
            "GET\n/auth/jwks",
            "GET\n/healthz",
            "GET\n/readyz",
            "GET\n/metrics",
            "GET\n/admin/v1/users",
            "POST\n/admin/v1/users/import",
            "PATCH\n/admin/v1/users/alice",
            "DELETE\n/admin/v1/tokens/abc",
            "GET\n/admin/v1/tokens?user=alice",
            "GET\n/nothing",
            "BAD METHOD\n/v2/",
        ]),
    ));
    all.push((
        "scope",
        t(&[
            "repository:team/app:pull,push",
            "repository(plugin):a/b:pull registry:catalog:* registry:admin:*",
            "repository:x:*",
            "repository:x:",
            "repository",
            "repo:x:pull",
            "repository(Plugin):x:pull",
            "repository:localhost:5000/x:pull",
            "registry:other:*",
            "registry:catalog:pull",
            "registry:admin:pull",
            "repository:a:pull,write",
            "grant team/**:pull,push",
            "grant repository:team/app:pull",
            "grant registry:catalog:*",
            "grant repository::pull",
            &format!("grant {}:pull", "a".repeat(300)),
            "grant Team/*:pull",
            "grant a/***:pull",
            "grant nocolon",
            "grant registry:catalog:pull",
            "grant a/b:",
            "grant a/b:write",
        ]),
    ));
    let mut jwt: Vec<Vec<u8>> = Vec::new();
    let claims = |iss: &str, aud: &str, nbf: i64, exp: i64| {
        format!(
            r#"{{"iss":"{iss}","sub":"alice","aud":"{aud}","exp":{exp},"nbf":{nbf},"iat":{nbf},"jti":"j","access":[{{"type":"repository","name":"a/b","actions":["pull"]}}],"cred":"pw:alice:1"}}"#
        )
    };
    let head = r#"{"alg":"ES256","typ":"JWT","kid":"fuzz-key"}"#;
    for c in [
        claims("fuzz-issuer", "fuzz-audience", 999_000, 1_001_000),
        claims("other", "fuzz-audience", 999_000, 1_001_000),
        claims("fuzz-issuer", "other", 999_000, 1_001_000),
        claims("fuzz-issuer", "fuzz-audience", 1_100_000, 1_200_000),
        claims("fuzz-issuer", "fuzz-audience", 900_000, 990_000),
        r#"{"iss":1}"#.to_string(),
    ] {
        jwt.push(format!("s{head}\n{c}").into_bytes());
    }
    for h in [
        r#"{"alg":"none","kid":"fuzz-key"}"#,
        r#"{"alg":"ES256","kid":"fuzz-key","crit":["b64"]}"#,
        r#"{"alg":"ES256","kid":"fuzz-key","jwk":{}}"#,
        r#"{"alg":"ES256","kid":"other"}"#,
        r#"{"alg":"ES256"}"#,
        r#"{"alg":"ES256","alg":"ES256"}"#,
    ] {
        jwt.push(format!("s{h}\n{{}}").into_bytes());
    }
    jwt.extend(t(&[
        "a.b.c",
        "not a token",
        "eyJhbGciOiJFUzI1NiIsImtpZCI6ImZ1enota2V5In0.e30.AAAA",
        "eyJhbGciOiJFUzI1NiIsImtpZCI6ImZ1enota2V5In0.e30.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ]));
    let mut point = vec![4u8];
    point.extend([7u8; 64]);
    let mut keys = vec![b'k', 2, b'k', b'1', 65];
    keys.extend(&point);
    jwt.push(keys);
    jwt.push(b"k".to_vec());
    all.push(("jwt", jwt));
    let h = "$2y$05$n4Uy0eSnMfvnESYL.bLwuuj0U/ETSsoTpRT9GVk5bektyVVa5xnIi";
    all.push((
        "htpasswd",
        t(&[
            &format!("# comment\n\nalice:{h}\nbob:{h}\n"),
            "",
            "nocolon",
            &format!("-eve:{h}"),
            "alice:$apr1$abc$def",
            "alice:{SHA}abc",
            "alice:$2y$03$n4Uy0eSnMfvnESYL.bLwuuj0U/ETSsoTpRT9GVk5bektyVVa5xnIi",
            "alice:$2y$18$n4Uy0eSnMfvnESYL.bLwuuj0U/ETSsoTpRT9GVk5bektyVVa5xnIi",
            &format!("alice:{h}\nalice:{h}"),
        ]),
    ));
    all.push((
        "challenge",
        t(&[
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
            r#"Bearer service="x", scope="a \"quoted\" b""#,
            r#"Basic realm="Registry Realm""#,
            "Basic realm=x, Bearer realm=y,service=z\nNegotiate",
            "",
            ",,",
            "Bearer realm=\"unterminated",
            "Digest realm=x, nonce=\"a,b\"",
        ]),
    ));
    all.push((
        "credentials",
        t(&[
            "a127.0.0.1:5000\nteam/app\n{\"auths\":{\"127.0.0.1:5000/team\":{\"auth\":\"YWxpY2U6czNjcmV0\"}}}",
            "ahost\nrepo\n{\"auths\":{\"https://host/v2/\":{\"username\":\"u\",\"password\":\"p\"}}}",
            "dhost\nrepo\n{\"auths\":{\"host\":{\"identitytoken\":\"tok\"}}}",
            "ddocker.io\nlibrary/alpine\n{\"auths\":{\"https://index.docker.io/v1/\":{\"auth\":\"dTpw\"}}}",
            "dhost\nrepo\n{\"credHelpers\":{\"host\":\"pass\"}}",
            "dhost\nrepo\n{\"credsStore\":\"desktop\"}",
            "dhost\nrepo\n{\"auths\":{}}",
            "ahost\nrepo\n   ",
            "ahost\nrepo\n{not json",
            "ahost\nrepo\n{\"auths\":{\"host\":{\"auth\":\"!!!\"}}}",
            "ahost\nrepo\n{\"auths\":{\"host\":{\"auth\":\"bm9jb2xvbg==\"}}}",
        ]),
    ));
    all.push((
        "config",
        t(&[
            "",
            "listen = \"127.0.0.1:5000\"\ndelete_enabled = true\ndrain_timeout = \"30s\"\n[log]\nformat = \"json\"\nlevel = \"info\"\n[uploads]\npurge_after = \"24h\"\n[manifests]\nmax_size = 4194304\nforeign_url_allow = [\"https://x/\"]\n[listing]\npage_size = 100\n[metrics]\nallow = [\"127.0.0.0/8\"]\n[auth]\nenabled = true\npublic = [\"library/**\"]\n",
            "listen = 5",
            "unknown_key = 1",
            "[manifests]\nmax_size = 1",
            "[listing]\npage_size = 0\n[uploads]\npurge_interval = \"0s\"",
            "[auth]\ntoken_ttl = \"1h\"",
            "drain_timeout = \"forever\"",
            "[metrics]\nallow = [\"300.0.0.0/8\"]",
            "[tls]\nself_signed = true",
            "a = [",
        ]),
    ));
    // unpack: flags byte, then entries (see `stowage_fuzz_bodies::unpack::build`).
    let s = |v: &str| {
        let mut b = vec![v.len() as u8];
        b.extend(v.as_bytes());
        b
    };
    let file =
        |name: &str, content: &str| [vec![0u8], s(name), vec![0xa4, 0x01], s(content)].concat();
    let dir = |name: &str| [vec![1u8], s(name), vec![0xed, 0x01]].concat();
    let link = |op: u8, name: &str, target: &str| [vec![op], s(name), s(target)].concat();
    let unpack: Vec<Vec<u8>> = vec![
        [
            vec![0u8],
            dir("etc"),
            file("etc/passwd", "root:x:0:0"),
            link(2, "etc/l", "passwd"),
            link(3, "etc/h", "etc/passwd"),
        ]
        .concat(),
        [
            vec![1u8],
            dir("a"),
            file("a/b", "x"),
            vec![7],
            file("a/.wh.b", ""),
            link(2, "c", "/a"),
        ]
        .concat(),
        [vec![6u8], file("x", "y")].concat(),
        [vec![2u8], file("x", "y")].concat(),
        [vec![0u8], file("../escape", "x")].concat(),
        [vec![0u8], file("/@OUT/abs", "x")].concat(),
        [vec![0u8], link(2, "out", "@OUT"), file("out/x", "pwned")].concat(),
        [vec![0u8], link(2, "up", "../.."), file("up/x", "pwned")].concat(),
        [
            vec![0u8],
            link(2, "nest", "@NEST"),
            file("nest/run/x", "pwned"),
        ]
        .concat(),
        [vec![0u8], link(3, "h", "../outside/canary")].concat(),
        [vec![0u8], link(3, "h", "@OUT/canary")].concat(),
        [
            vec![0u8],
            link(2, "l", "../outside"),
            link(3, "h", "l/canary"),
        ]
        .concat(),
        [vec![0u8], link(3, "h", "missing")].concat(),
        [
            vec![0u8],
            dir("d"),
            file("d/x", "1"),
            vec![7],
            vec![5],
            s("d/.wh..wh..opq"),
            vec![0xa4, 0x01],
            s(""),
        ]
        .concat(),
        [vec![0u8], file("d/.wh..", "")].concat(),
        [
            vec![0u8],
            vec![4],
            s("dev/null"),
            vec![0xb6, 0x01, 1, 3],
            vec![5],
            s("dev/sda"),
            vec![0xb0, 0x01, 8, 0],
            vec![6],
            s("fifo"),
            vec![0xa4, 0x01],
        ]
        .concat(),
        [vec![0u8], vec![8], s("f"), s("user.k"), s("v")].concat(),
        [vec![0u8], vec![9], s("f"), s("abc"), vec![200]].concat(),
        [vec![0u8], vec![10], vec![0xc0, 0x01]].concat(),
        [vec![0u8], file("x", "y"), file("x/y", "z")].concat(),
        [vec![8u8], b"not a tar".to_vec()].concat(),
        [vec![9u8], b"\x1f\x8bnot gzip".to_vec()].concat(),
    ];
    all.push(("unpack", unpack));

    for (target, inputs) in all {
        let dir = Path::new(&out).join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        for (i, input) in inputs.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), input).expect("seed");
        }
    }
}
