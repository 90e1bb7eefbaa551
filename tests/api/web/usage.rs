//! The usage chart on a token's page and the sparkline in its row: server-drawn SVG whose numbers
//! are the token's, with a text alternative.

use super::*;
use serde_json::json;

on_every_backend!(the_token_page_charts_its_uses_and_refusals_with_the_numbers_in_words,);

async fn the_token_page_charts_its_uses_and_refusals_with_the_numbers_in_words(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.last_used_flush = Duration::from_millis(200);
    })
    .await;
    app.create_user("kim", false).await;
    let mut browser = Browser::signed_in(&app, "kim", PASSWORD).await;
    let created = browser
        .post(
            "/tokens",
            &[
                ("name", "gauge"),
                ("expires", "never"),
                ("access", "read_only"),
            ],
        )
        .await;
    created.assert_html(StatusCode::OK, "created");
    let id = token_ids(&created.body)[0].clone();
    let key = revealed_key(&created.body).unwrap();
    let empty = browser.get(&format!("/tokens/{id}")).await;
    assert!(
        empty.body.contains(r#"data-uses="0" data-refused="0""#),
        "no use yet: an empty chart"
    );
    for _ in 0..4 {
        assert_eq!(app.me_status(&key).await, StatusCode::OK);
    }
    let write = app
        .post("/api/tokens/", Some(&key), json!({"name": "x"}))
        .await;
    assert_eq!(write.status(), StatusCode::FORBIDDEN);
    // Written in batches: wait for the counts to land.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let page = loop {
        let page = browser.get(&format!("/tokens/{id}")).await;
        if page.body.contains(r#"data-uses="4" data-refused="1""#)
            || std::time::Instant::now() > deadline
        {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    page.assert_html(StatusCode::OK, "the token's page");
    assert!(
        page.body.contains(r#"data-uses="4" data-refused="1""#),
        "the chart's totals are the token's: {}",
        page.body
    );
    assert!(page.body.contains("<svg") && page.body.contains(r#"role="img""#));
    assert!(
        page.body.contains("4 uses, 1 refused"),
        "the totals in words, for screen readers"
    );
    assert_eq!(
        page.body.matches(r#"class="bar-uses""#).count(),
        1,
        "one hour with activity, one bar"
    );
    assert!(
        page.body
            .contains(r#"<td data-label="Uses">4</td><td data-label="Refused">1</td>"#),
        "the numbers as a table"
    );

    let list = browser.get("/tokens").await;
    let row = &list.body[list.body.find(&format!("data-token-id=\"{id}\"")).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains(r#"class="spark""#)
            && row.contains("last 7 days: 4 uses, 1 refused; daily uses 0, 0, 0, 0, 0, 0, 4"),
        "the row's sparkline, in words too: {row}"
    );
}

on_every_backend!(the_admin_overview_shows_activity_logins_refusals_and_the_busiest_tokens,);

async fn the_admin_overview_shows_activity_logins_refusals_and_the_busiest_tokens(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |settings| {
        settings.last_used_flush = Duration::from_millis(200);
    })
    .await;
    let owner = app.create_user("lena", false).await;
    let (status, created) = status_and_json(
        app.post(
            "/api/tokens/",
            Some(&owner),
            json!({"name": "busy meter", "read_only": true}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["id_token"].as_str().unwrap().to_owned();
    for _ in 0..6 {
        assert_eq!(app.me_status(&key).await, StatusCode::OK);
    }
    let write = app
        .post("/api/tokens/", Some(&key), json!({"name": "x"}))
        .await;
    assert_eq!(write.status(), StatusCode::FORBIDDEN);
    assert!(app.try_login("lena", "not the password").await.is_err());
    let mut admin = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let page = loop {
        let page = admin.get("/admin").await;
        page.assert_html(StatusCode::OK, "the overview");
        // Uses and refusals are written back in batches, each on its own schedule.
        let written = page.body.contains("<td data-label=\"Uses\">6</td>")
            && page.body.contains("read-only token, a write");
        if written || std::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let busiest = &page.body[page
        .body
        .find(r#"id="busiest""#)
        .expect("the busiest tokens")..];
    assert!(
        busiest.contains(
            "<td data-label=\"Token\">busy meter</td><td data-label=\"Owner\">lena</td><td data-label=\"Uses\">6</td>"
        ),
        "lena's meter among the busiest with its 6 uses: {busiest}"
    );
    assert!(
        page.body.contains(r#"<td data-label="Reason">read-only token, a write</td><td data-label="Attempts">1</td>"#),
        "the refusal by its reason: {}",
        page.body
    );
    let logins = &page.body[page
        .body
        .find(r#"id="logins-chart""#)
        .expect("the logins chart")..];
    assert!(
        logins.contains(r#"data-refused="1""#),
        "one failed login: {logins}"
    );
    assert!(
        page.body.contains(r#"id="usage-chart""#) && page.body.contains("<svg"),
        "every token's usage chart"
    );
    let active: i64 = {
        let marker = r#"<strong data-fact="active-tokens">"#;
        let rest = &page.body[page.body.find(marker).unwrap() + marker.len()..];
        rest[..rest.find('<').unwrap()].parse().unwrap()
    };
    assert!(
        active >= 2,
        "the meter and the sessions that made the calls: {active}"
    );
}
