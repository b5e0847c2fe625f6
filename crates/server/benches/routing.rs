//! Cost of request routing: turning a request's method, `/v2/...` path, query and headers into
//! an `Endpoint`, which every registry request pays before any storage work.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use stowage_server::routes::{parse, query_pairs};

fn routing(c: &mut Criterion) {
    let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let paths = [
        (
            "manifest by tag",
            "/v2/library/ubuntu/manifests/22.04".to_string(),
        ),
        (
            "manifest by digest",
            format!("/v2/team/app/sub/manifests/{digest}"),
        ),
        ("blob", format!("/v2/library/ubuntu/blobs/{digest}")),
        (
            "upload session",
            "/v2/team/app/blobs/uploads/6f1c0e9a2b3d4c5e6f708192a3b4c5d6".to_string(),
        ),
        ("tags list", "/v2/a/b/c/d/tags/list".to_string()),
    ];
    let mut g = c.benchmark_group("route");
    for (name, path) in &paths {
        let parts = axum::http::Request::get(path.as_str())
            .body(())
            .expect("a valid request")
            .into_parts()
            .0;
        g.bench_function(*name, |b| b.iter(|| parse(black_box(&parts)).unwrap()));
    }
    g.finish();
    c.bench_function("query with three tags", |b| {
        b.iter(|| query_pairs(black_box(Some("tag=v1&tag=v1.2&tag=latest"))))
    });
}

criterion_group!(benches, routing);
criterion_main!(benches);
