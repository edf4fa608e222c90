//! The HTML a person (or headless browser) sees: device-login form, sign-in/consent page, results and errors.
//! Plain, self-contained pages with stable field names so tests can fill them in.

use crate::users::UserInfo;

/// Escapes text for HTML element content and double-quoted attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:36em;margin:3em auto}}</style></head>\n\
         <body>\n<h1>{title}</h1>\n{body}\n</body></html>\n",
        title = escape(title)
    )
}

fn user_choices(users: &[UserInfo], selected: &str) -> String {
    let options: String = users
        .iter()
        .map(|u| format!("<option value=\"{e}\">{n} ({e})</option>", e = escape(&u.email), n = escape(&u.display_name)))
        .collect();
    format!(
        "<label>Account <input id=\"user\" name=\"user\" list=\"users\" value=\"{}\" required></label>\n\
         <datalist id=\"users\">{options}</datalist>",
        escape(selected)
    )
}

pub(crate) fn device_login(users: &[UserInfo], message: Option<&str>) -> String {
    let notice = message.map(|m| format!("<p id=\"message\">{}</p>\n", escape(m))).unwrap_or_default();
    let default_user = users.first().map(|u| u.email.as_str()).unwrap_or_default();
    page(
        "Enter code",
        &format!(
            "{notice}<form id=\"devicelogin\" method=\"post\" action=\"/devicelogin\">\n\
             <p><label>Code <input id=\"user_code\" name=\"user_code\" autocomplete=\"off\" required></label></p>\n\
             <p>{}</p>\n\
             <p><button id=\"approve\" type=\"submit\" name=\"action\" value=\"approve\">Continue</button>\n\
             <button id=\"decline\" type=\"submit\" name=\"action\" value=\"decline\">Cancel</button></p>\n</form>",
            user_choices(users, default_user)
        ),
    )
}

pub(crate) fn device_result(approved: bool) -> String {
    if approved {
        page(
            "You're signed in",
            "<p id=\"result\">You have signed in to the application on your device. You may now close this window.</p>",
        )
    } else {
        page("Sign-in canceled", "<p id=\"result\">You have declined to sign in to the application on your device.</p>")
    }
}

/// What the sign-in/consent page needs to show.
#[derive(Debug)]
pub(crate) struct ConsentPage<'a> {
    pub(crate) action: &'a str,
    pub(crate) request_id: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) scopes: &'a [String],
    pub(crate) users: &'a [UserInfo],
    pub(crate) login_hint: Option<&'a str>,
    pub(crate) message: Option<&'a str>,
}

pub(crate) fn consent(page_data: &ConsentPage<'_>) -> String {
    let scopes: String = page_data.scopes.iter().map(|s| format!("<li>{}</li>", escape(s))).collect();
    let selected =
        page_data.login_hint.or_else(|| page_data.users.first().map(|u| u.email.as_str())).unwrap_or_default();
    let notice = page_data.message.map(|m| format!("<p id=\"message\">{}</p>\n", escape(m))).unwrap_or_default();
    page(
        "Permissions requested",
        &format!(
            "{notice}<p>Application <code id=\"client_id\">{client}</code> would like to:</p>\n\
             <ul id=\"scopes\">{scopes}</ul>\n\
             <form id=\"consent\" method=\"post\" action=\"{action}\">\n\
             <input type=\"hidden\" name=\"request_id\" value=\"{request_id}\">\n\
             <p>{users}</p>\n\
             <p><button id=\"accept\" type=\"submit\" name=\"action\" value=\"accept\">Accept</button>\n\
             <button id=\"cancel\" type=\"submit\" name=\"action\" value=\"cancel\">Cancel</button></p>\n</form>",
            client = escape(page_data.client_id),
            action = escape(page_data.action),
            request_id = escape(page_data.request_id),
            users = user_choices(page_data.users, selected),
        ),
    )
}

pub(crate) fn error_page(error: &str, description: &str) -> String {
    page(
        "Sorry, but we're having trouble signing you in.",
        &format!("<p id=\"error\">{}</p>\n<p id=\"error_description\">{}</p>", escape(error), escape(description)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
