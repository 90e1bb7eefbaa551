//! The web UI at the handler level: real HTTP with a cookie-keeping client, real database.
//! Every page and form: status, redirects, CSRF refusal, escaping, admin-only pages, key shown once.

mod admin;
mod pair;
mod policy;
mod safety;
mod sign_in;
mod tokens;
mod usage;

use std::time::Duration;

use reqwest::{StatusCode, header};
use sea_orm::ConnectionTrait;

use crate::audit::audit_log;
use crate::helpers::{
    ADMIN_PASSWORD, Backend, PASSWORD, TestApp, spawn_app, spawn_app_with, status_and_json,
};
use crate::on_every_backend;

/// A browser: keeps cookies, does not follow redirects, remembers the last page's CSRF token.
struct Browser {
    client: reqwest::Client,
    base: String,
    csrf: String,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    content_type: String,
    set_cookie: Vec<String>,
    body: String,
}

impl Page {
    fn assert_redirect(&self, to: &str, context: &str) {
        assert_eq!(
            self.status,
            StatusCode::SEE_OTHER,
            "{context}: {}",
            self.body
        );
        assert_eq!(self.location.as_deref(), Some(to), "{context}");
    }

    fn assert_html(&self, status: StatusCode, context: &str) {
        assert_eq!(self.status, status, "{context}: {}", self.body);
        assert!(
            self.content_type.starts_with("text/html"),
            "{context}: an HTML page, got {}",
            self.content_type
        );
    }
}

/// The value of the first `<… name="NAME" value="…">` in a page.
fn field_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// The key shown once on the tokens page.
fn revealed_key(html: &str) -> Option<String> {
    let marker = "<code id=\"new-key\" tabindex=\"0\" aria-label=\"The new key\">";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('<')? + start;
    Some(html[start..end].to_owned())
}

/// Token ids in a table, in order.
fn token_ids(html: &str) -> Vec<String> {
    html.split("data-token-id=\"")
        .skip(1)
        .map(|rest| rest[..36].to_owned())
        .collect()
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.address.clone(),
            csrf: String::new(),
        }
    }

    async fn page(&mut self, response: reqwest::Response) -> Page {
        let headers = response.headers().clone();
        let page = Page {
            status: response.status(),
            location: headers
                .get(header::LOCATION)
                .map(|v| v.to_str().unwrap().to_owned()),
            content_type: headers
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            set_cookie: headers
                .get_all(header::SET_COOKIE)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect(),
            body: response.text().await.unwrap(),
        };
        if let Some(csrf) = field_value(&page.body, "csrf") {
            self.csrf = csrf;
        }
        page
    }

    async fn get(&mut self, path: &str) -> Page {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        self.page(response).await
    }

    /// Posts a form with the CSRF token of the last page seen.
    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf.clone();
        let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        form.extend_from_slice(fields);
        self.post_raw(path, &form).await
    }

    async fn post_raw(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        self.page(response).await
    }

    async fn sign_in(&mut self, username: &str, password: &str) -> Page {
        let login = self.get("/login").await;
        login.assert_html(StatusCode::OK, "the sign-in page");
        self.post("/login", &[("username", username), ("password", password)])
            .await
    }

    /// Signs in and lands on `/tokens`.
    async fn signed_in(app: &TestApp, username: &str, password: &str) -> Browser {
        let mut browser = Browser::new(app);
        let signed_in = browser.sign_in(username, password).await;
        signed_in.assert_redirect("/tokens", "a successful sign-in goes to the tokens page");
        let tokens = browser.get("/tokens").await;
        tokens.assert_html(StatusCode::OK, "the tokens page after sign-in");
        browser
    }

    /// Creates a device token through the form and returns its id and key, read from the page.
    async fn create_token(&mut self, name: &str, expires: &str) -> (String, String) {
        let created = self
            .post("/tokens", &[("name", name), ("expires", expires)])
            .await;
        created.assert_html(StatusCode::OK, "creating a token answers with its key");
        let key = revealed_key(&created.body).expect("the new key is shown after creation");
        (token_ids(&created.body)[0].clone(), key)
    }
}

/// The session tokens of `username`'s web sign-ins ("browser …"), through the admin API.
async fn browser_sessions(app: &TestApp, username: &str) -> Vec<serde_json::Value> {
    let path = format!("/api/admin/tokens/?user={username}&kind=session");
    let (status, listed) = status_and_json(app.get(&path, Some(&app.admin_key)).await).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"].as_str().unwrap().starts_with("browser "))
        .cloned()
        .collect()
}

/// The last `/admin/users/<uuid>` id on the row of `username`.
async fn user_id(admin: &mut Browser, username: &str) -> String {
    let page = admin.get("/admin/users").await;
    let row = &page.body[page
        .body
        .find(&format!("data-username=\"{username}\""))
        .unwrap_or_else(|| panic!("{username} listed"))..];
    row[row.find("/admin/users/").unwrap() + 13..][..36].to_owned()
}
