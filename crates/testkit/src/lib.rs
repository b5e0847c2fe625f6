//! Dev-only test support shared by the integration, conformance and interop tests.
//!
//! Owns: starting a real `stowage` server process on a free loopback port (`server`), the
//! reference registry for comparison (`distribution`) and the choice between them (`target`);
//! building small but real container images and OCI layouts (`image`); and driving real
//! clients (`skopeo`, `podman`, `containerd`, a private `docker` engine, via `tools`), with
//! `tls` making them trust an HTTPS registry's CA; running stowage's own client commands with
//! isolated credentials (`client`); and the one raw HTTP client: byte-exact one-shot requests,
//! wire-level HTTP/1.1 and HTTP/2 connections and a connection-counting proxy (`wire`); and fault
//! injection (`fault`: seeded fault plans, wrapped stores, the filesystem I/O hook's driver and a
//! network fault proxy). It must never be a
//! dependency of production code.

pub mod client;
pub mod containerd;
pub mod distribution;
pub mod docker;
pub mod fault;
pub mod image;
pub mod podman;
pub mod server;
pub mod skopeo;
pub mod target;
pub mod tls;
pub mod tools;
pub mod wire;
