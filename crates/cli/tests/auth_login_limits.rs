//! Failed logins are limited per address and user with a fast 429, also when sent all at
//! once; behind `auth.trusted_proxies` the realm and the counted address come from the
//! `X-Forwarded-*` headers, and `auth.external_url` fixes the realm.

mod common;

use std::time::{Duration, Instant};

use common::auth::*;
use reqwest::Method;

/// Wrong passwords sent all at once cannot slip past the limit while the first ones are still
/// being checked: attempts in flight count against it. The right password sent on many
/// connections at once is checked once and all of them pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_sent_at_once_are_limited_too() {
    let reg = AuthReg::start("login_failures = 5", &[user("alice", ALICE_PW, TEAM_RW)]);
    // Distinct guesses: identical ones share a single check, so they cannot add up.
    let guesses: Vec<Who> = (0..40)
        .map(|i| Who::basic("alice", &format!("wrong-password-{i}")))
        .collect();
    let answers =
        futures_util::future::join_all(guesses.iter().map(|w| reg.get_as(w, "/v2/"))).await;
    let checked = answers.iter().filter(|r| r.status == 401).count();
    let refused = answers.iter().filter(|r| r.status == 429).count();
    assert_eq!(checked + refused, 40);
    assert!(
        checked <= 5,
        "{checked} wrong passwords were checked, the limit is 5"
    );
    let bob = AuthReg::start("login_failures = 5", &[user("bob", BOB_PW, TEAM_RW)]);
    let right = Who::basic("bob", BOB_PW);
    let answers = futures_util::future::join_all((0..40).map(|_| bob.get_as(&right, "/v2/"))).await;
    assert!(
        answers.iter().all(|r| r.status == 200),
        "a burst of correct logins was refused: {:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
}

/// After `login_failures` wrong passwords for one user from one address, the next login (even
/// with the right password) gets 429 TOOMANYREQUESTS with Retry-After at once, on every
/// endpoint that takes a password; another user from the same address is unaffected.
#[tokio::test]
async fn failed_logins_are_limited_per_address_and_user() {
    let reg = AuthReg::start(
        "login_failures = 3",
        &[
            user("alice", ALICE_PW, TEAM_RW),
            user("bob", BOB_PW, TEAM_RW),
        ],
    );
    reg.get_as(&alice(), "/v2/").await.expect_status(200);
    let wrong = Who::basic("alice", "not-the-password");
    for _ in 0..3 {
        reg.get_as(&wrong, "/v2/")
            .await
            .expect_error(401, "UNAUTHORIZED");
    }
    let started = Instant::now();
    let r = reg.get_as(&alice(), "/v2/").await;
    let took = started.elapsed();
    r.expect_error(429, "TOOMANYREQUESTS");
    let retry: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After:\n{r}"))
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is not a number of seconds:\n{r}"));
    assert!(retry >= 1, "{r}");
    assert!(
        took < Duration::from_millis(100),
        "the refusal took {took:?}: was a hash computed?"
    );

    // A spoofed X-Forwarded-For from an untrusted peer changes nothing.
    let spoofed = reg
        .send_as(
            &alice(),
            reg.req(Method::GET, "/v2/")
                .header("x-forwarded-for", "10.9.8.7"),
        )
        .await;
    spoofed.expect_error(429, "TOOMANYREQUESTS");

    // The token endpoint and the admin API refuse it too.
    let t = reg
        .token_request(&alice(), &["repository:team/app:pull"], "")
        .await;
    assert_eq!(t.status, 429, "token endpoint:\n{t}");
    assert!(t.header("retry-after").is_some(), "{t}");
    let form = reg
        .token_post(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", ALICE_PW),
            ("service", "stowage"),
        ])
        .await;
    assert_eq!(form.status, 429, "token endpoint (POST):\n{form}");
    let admin_api = reg.get_as(&alice(), "/admin/v1/tokens").await;
    assert_eq!(admin_api.status, 429, "admin API:\n{admin_api}");

    // Bob, from the same address, is unaffected.
    reg.get_as(&bob(), "/v2/").await.expect_status(200);
    reg.jwt(&bob(), &["repository:team/app:pull"]).await;
}

/// The realm and the client address: `X-Forwarded-*` headers are ignored from untrusted
/// peers; from `auth.trusted_proxies` the realm follows `X-Forwarded-Proto/Host` and failed
/// logins are counted per the last untrusted `X-Forwarded-For` address; `auth.external_url`
/// fixes the realm.
#[tokio::test]
async fn realm_and_client_address_behind_a_trusted_proxy() {
    let forwarded = |rb: reqwest::RequestBuilder, xff: &str| {
        rb.header("x-forwarded-for", xff)
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "registry.example.com")
    };

    let direct = AuthReg::start("", &[]);
    let r = direct
        .send(forwarded(direct.req(Method::GET, "/v2/"), "10.0.0.1"))
        .await;
    assert!(
        challenge(&r).starts_with(&format!("Bearer realm=\"{}/auth/token\"", direct.base)),
        "forwarded headers believed from an untrusted peer:\n{r}"
    );

    let reg = AuthReg::start(
        "login_failures = 2\ntrusted_proxies = [\"127.0.0.1/32\"]",
        &[user("alice", ALICE_PW, TEAM_RW)],
    );
    let r = reg
        .send(forwarded(reg.req(Method::GET, "/v2/"), "10.0.0.1"))
        .await;
    assert!(
        challenge(&r).starts_with("Bearer realm=\"https://registry.example.com/auth/token\""),
        "forwarded headers ignored from a trusted proxy:\n{r}"
    );
    let wrong = Who::basic("alice", "not-the-password");
    for _ in 0..2 {
        reg.send_as(
            &wrong,
            reg.req(Method::GET, "/v2/")
                .header("x-forwarded-for", "10.0.0.1"),
        )
        .await
        .expect_status(401);
    }
    for xff in ["10.0.0.1", "5.5.5.5, 10.0.0.1"] {
        reg.send_as(
            &alice(),
            reg.req(Method::GET, "/v2/").header("x-forwarded-for", xff),
        )
        .await
        .expect_error(429, "TOOMANYREQUESTS");
    }
    reg.send_as(
        &alice(),
        reg.req(Method::GET, "/v2/")
            .header("x-forwarded-for", "10.0.0.2"),
    )
    .await
    .expect_status(200);

    let fixed = AuthReg::start("external_url = \"https://cr.example.org/\"", &[]);
    let r = fixed
        .send(forwarded(fixed.req(Method::GET, "/v2/"), "10.0.0.1"))
        .await;
    assert_eq!(
        challenge(&r),
        "Bearer realm=\"https://cr.example.org/auth/token\",service=\"stowage\"",
        "{r}"
    );
}
