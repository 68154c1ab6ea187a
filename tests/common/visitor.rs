//! A browser without a browser, for the privacy center's pages: keeps the session cookie and
//! never follows redirects.

use super::Server;

/// A browser without a browser: keeps the session cookie, never follows redirects.
pub struct Visitor {
    http: reqwest::Client,
    base: String,
    pub cookie: Option<String>,
}

pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub html: String,
}

impl Page {
    /// The anti-forgery token in the page's forms.
    pub fn csrf(&self) -> String {
        let at = self.html.find("name=\"csrf\" value=\"").expect("a form with a csrf field") + 19;
        self.html[at..].split('"').next().unwrap().to_string()
    }
    pub fn h1(&self) -> &str {
        let at = self.html.find("<h1>").map(|i| i + 4).unwrap_or(0);
        self.html[at..].split("</h1>").next().unwrap_or("")
    }
}

impl Visitor {
    pub fn new(server: &Server) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { http, base: server.url.clone(), cookie: None }
    }

    pub async fn send(&mut self, r: reqwest::RequestBuilder) -> Page {
        let r = match &self.cookie {
            Some(c) => r.header("cookie", c),
            None => r,
        };
        let resp = r.send().await.expect("HTTP");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if let Some(set) = headers.get("set-cookie").and_then(|v| v.to_str().ok()) {
            let pair = set.split(';').next().unwrap().to_string();
            self.cookie = if pair.ends_with('=') { None } else { Some(pair) };
        }
        Page { status, headers, html: resp.text().await.unwrap_or_default() }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let r = self.http.get(format!("{}{path}", self.base));
        self.send(r).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let r = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(r).await
    }

    /// A form sent by a browser with Global Privacy Control on.
    pub async fn post_with_gpc(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let r = self.http.post(format!("{}{path}", self.base)).header("Sec-GPC", "1").form(form);
        self.send(r).await
    }

    /// Opens the link, continues, and lands signed in.
    pub async fn sign_in(&mut self, link_path: &str) -> Page {
        let page = self.get(link_path).await;
        assert_eq!(page.status, 200, "{}", page.html);
        let secret = link_path.rsplit('/').next().unwrap();
        self.post("/privacy/sign-in", &[("link", secret)]).await
    }
}
