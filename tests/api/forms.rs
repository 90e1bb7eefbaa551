//! A small cookie-keeping form client for the security tests: reads each page's CSRF token and
//! posts it back, never follows redirects.

use reqwest::{StatusCode, header};

use crate::helpers::TestApp;

pub struct FormClient {
    pub client: reqwest::Client,
    pub base: String,
    pub csrf: String,
}

pub struct Answer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub content_type: String,
    pub body: String,
}

impl FormClient {
    pub fn new(app: &TestApp) -> FormClient {
        FormClient {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.address.clone(),
            csrf: String::new(),
        }
    }

    /// Signs in through `/login` and checks that it worked.
    pub async fn signed_in(app: &TestApp, username: &str, password: &str) -> FormClient {
        let mut client = FormClient::new(app);
        client.get("/login").await;
        let answer = client
            .post("/login", &[("username", username), ("password", password)])
            .await;
        assert_eq!(
            answer.location.as_deref(),
            Some("/tokens"),
            "{username} signs in: {} {}",
            answer.status,
            answer.body
        );
        client
    }

    pub async fn answer(&mut self, response: reqwest::Response) -> Answer {
        let headers = response.headers().clone();
        let text = |name| {
            headers
                .get(name)
                .map(|v: &header::HeaderValue| v.to_str().unwrap().to_owned())
        };
        let answer = Answer {
            status: response.status(),
            location: text(header::LOCATION),
            content_type: text(header::CONTENT_TYPE).unwrap_or_default(),
            body: response.text().await.unwrap(),
        };
        let marker = "name=\"csrf\" value=\"";
        if let Some(start) = answer.body.find(marker).map(|at| at + marker.len())
            && let Some(end) = answer.body[start..].find('"')
        {
            self.csrf = answer.body[start..start + end].to_owned();
        }
        answer
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        self.answer(response).await
    }

    /// Posts `fields` with the CSRF token of the last page seen.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        self.post_with_headers(path, fields, &[]).await
    }

    /// `post` with extra request headers.
    pub async fn post_with_headers(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Answer {
        let csrf = self.csrf.clone();
        let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        form.extend_from_slice(fields);
        let mut request = self.client.post(format!("{}{path}", self.base)).form(&form);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        self.answer(response).await
    }

    /// The flash message shown on the page a redirect leads to.
    pub async fn follow(&mut self, answer: &Answer) -> Answer {
        let to = answer
            .location
            .clone()
            .unwrap_or_else(|| panic!("a redirect expected: {} {}", answer.status, answer.body));
        self.get(&to).await
    }
}
