//! Registry authentication: parsing `WWW-Authenticate` challenges (RFC 7235) and
//! the Docker token protocol's answers (distribution "Token Authentication
//! Specification"), and remembering which scheme and tokens a registry wants.

use std::collections::HashMap;

use serde::Deserialize;

/// One challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value, which may hold several challenges
/// (`Basic realm="x", Bearer realm="y",service="z"`). Unknown schemes are dropped.
pub(super) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        let scheme_end = rest
            .find(|c: char| c.is_whitespace() || c == ',')
            .unwrap_or(rest.len());
        let scheme = rest[..scheme_end].to_ascii_lowercase();
        rest = rest[scheme_end..].trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        let mut params: HashMap<String, String> = HashMap::new();
        // Parameters are `key=value` or `key="quoted, value"`; a word not followed
        // by `=` starts the next challenge.
        while let Some(eq) = rest.find('=') {
            let key = &rest[..eq];
            if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == ',') {
                break;
            }
            let after = &rest[eq + 1..];
            let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end.min(quoted.len())..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            };
            params.insert(key.to_ascii_lowercase(), value);
            rest = remaining.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        }
        match scheme.as_str() {
            "basic" => out.push(Challenge::Basic),
            "bearer" => {
                if let Some(realm) = params.remove("realm") {
                    out.push(Challenge::Bearer {
                        realm,
                        service: params.remove("service"),
                        scope: params.remove("scope"),
                    });
                }
            }
            _ => {}
        }
        if scheme_end == 0 {
            break;
        }
    }
    out
}

/// The token endpoint's answer: `token`, or the OAuth2 name `access_token`.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// Extracts the token from a token endpoint's JSON body.
pub(super) fn parse_token(body: &[u8]) -> Result<String, String> {
    let answer: TokenAnswer =
        serde_json::from_slice(body).map_err(|e| format!("token answer is not JSON: {e}"))?;
    answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "token answer holds neither \"token\" nor \"access_token\"".to_owned())
}

/// The repository scope a push needs, plus pull on the repository blobs are
/// mounted from.
pub(super) fn push_scopes(name: &str, mount_from: Option<&str>) -> Vec<String> {
    let mut scopes = vec![format!("repository:{name}:pull,push")];
    if let Some(from) = mount_from.filter(|f| *f != name) {
        scopes.push(format!("repository:{from}:pull"));
    }
    scopes
}

/// What the client has learnt about how a registry wants to be addressed.
#[derive(Debug, Clone, Default)]
pub(super) enum AuthState {
    /// Nothing learnt yet, or the registry accepts anonymous requests.
    #[default]
    Anonymous,
    /// Send the credential with every request.
    Basic,
    /// Fetch tokens from `realm`; tokens are kept per scope set.
    Bearer {
        realm: String,
        service: Option<String>,
        tokens: HashMap<Vec<String>, String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_with_quoted_commas() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            }]
        );
    }

    #[test]
    fn parses_several_challenges_and_case() {
        let c = parse_challenges(
            r#"basic realm="Registry Realm", BEARER realm="http://t/x", Negotiate"#,
        );
        assert_eq!(
            c,
            vec![
                Challenge::Basic,
                Challenge::Bearer {
                    realm: "http://t/x".into(),
                    service: None,
                    scope: None
                }
            ]
        );
        assert!(parse_challenges("").is_empty());
        assert!(
            parse_challenges("Bearer service=x").is_empty(),
            "a bearer challenge needs a realm"
        );
    }

    #[test]
    fn token_answers() {
        assert_eq!(
            parse_token(br#"{"token":"t1","expires_in":300}"#).unwrap(),
            "t1"
        );
        assert_eq!(parse_token(br#"{"access_token":"t2"}"#).unwrap(), "t2");
        assert!(parse_token(br#"{"token":""}"#).is_err());
        assert!(parse_token(b"<html>").is_err());
    }

    #[test]
    fn scopes_for_push_and_mount() {
        assert_eq!(push_scopes("a/b", None), vec!["repository:a/b:pull,push"]);
        assert_eq!(
            push_scopes("a/b", Some("c")),
            vec!["repository:a/b:pull,push", "repository:c:pull"]
        );
        assert_eq!(push_scopes("a/b", Some("a/b")).len(), 1);
    }
}
