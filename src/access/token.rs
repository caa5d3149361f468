//! The caller's bearer token, from `Authorization` or from the header the API server's
//! service proxy passes on.

use axum::http::{HeaderMap, StatusCode, header};

use super::{Refusal, TOKEN_HEADER};

/// The bearer token of a request: `Authorization: Bearer <token>` from a caller that
/// reaches the operator directly, or [`TOKEN_HEADER`] from one that comes through the API
/// server. Both at once must agree: two different credentials make no identity.
pub fn bearer_token(headers: &HeaderMap) -> Result<String, Refusal> {
    let direct = single(headers, header::AUTHORIZATION.as_str())?
        .map(|value| {
            let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(Refusal::unauthorized(
                    "the Authorization header must carry a bearer token: Authorization: Bearer <token>",
                ));
            }
            non_empty(token.trim(), "Authorization")
        })
        .transpose()?;
    let forwarded = single(headers, TOKEN_HEADER)?
        .map(|value| {
            // The bare token; a "Bearer " in front is forgiven.
            let token = match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token,
                _ => value,
            };
            non_empty(token.trim(), TOKEN_HEADER)
        })
        .transpose()?;
    match (direct, forwarded) {
        (Some(a), Some(b)) if a != b => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the request carries two different tokens (Authorization and {TOKEN_HEADER}); send one"
            ),
        )),
        (Some(token), _) | (None, Some(token)) => Ok(token),
        (None, None) => Err(Refusal::unauthorized(format!(
            "reading the audit log takes a bearer token that the API server accepts: send Authorization: Bearer <token> \
             (or {TOKEN_HEADER}: <token> through the API server's service proxy); \
             `kubectl decision history` and `kubectl decision audit` send yours"
        ))),
    }
}

/// The one value of a header, as text.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Refusal> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("the request carries the {name} header more than once"),
        ));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| Refusal::unauthorized(format!("the {name} header is not a valid token")))
}

fn non_empty(token: &str, header: &str) -> Result<String, Refusal> {
    if token.is_empty() {
        Err(Refusal::unauthorized(format!(
            "the {header} header carries no token"
        )))
    } else {
        Ok(token.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::access::tests::headers;

    #[test]
    fn the_token_comes_from_authorization_or_the_forwarding_header() {
        let token = |pairs: &[(&str, &str)]| bearer_token(&headers(pairs));
        assert_eq!(token(&[("authorization", "Bearer abc")]).unwrap(), "abc");
        assert_eq!(token(&[("Authorization", "bearer  abc ")]).unwrap(), "abc");
        assert_eq!(token(&[(TOKEN_HEADER, "abc")]).unwrap(), "abc");
        assert_eq!(token(&[(TOKEN_HEADER, "Bearer abc")]).unwrap(), "abc");
        assert_eq!(
            token(&[("authorization", "Bearer abc"), (TOKEN_HEADER, "abc")]).unwrap(),
            "abc"
        );

        let refused = |pairs: &[(&str, &str)]| token(pairs).unwrap_err();
        let none = refused(&[]);
        assert_eq!(none.status, StatusCode::UNAUTHORIZED);
        assert!(none.message.contains("takes a bearer token"), "{none:?}");
        for pairs in [
            &[("authorization", "Basic YWxpY2U6c2VjcmV0")][..],
            &[("authorization", "Bearer")],
            &[("authorization", "Bearer   ")],
            &[(TOKEN_HEADER, " ")],
        ] {
            assert_eq!(refused(pairs).status, StatusCode::UNAUTHORIZED, "{pairs:?}");
        }
        let basic = refused(&[("authorization", "Basic YWxpY2U6c2VjcmV0")]);
        assert!(basic.message.contains("Bearer <token>"), "{basic:?}");
        assert_eq!(
            refused(&[("authorization", "Bearer a"), (TOKEN_HEADER, "b")]).status,
            StatusCode::BAD_REQUEST,
            "two credentials make no identity"
        );
        assert_eq!(
            refused(&[(TOKEN_HEADER, "a"), (TOKEN_HEADER, "b")]).status,
            StatusCode::BAD_REQUEST
        );
        let mut odd = HeaderMap::new();
        odd.insert(
            TOKEN_HEADER,
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert_eq!(
            bearer_token(&odd).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
    }
}
