//! Request parameters: x0's form-encoded bodies, JSON bodies, and the query string.
//!
//! x0's classic API read only a form-encoded body, whatever its `Content-Type`; the rewrite also
//! read the query string, which wins on a duplicate name. Director does the same and accepts a
//! JSON object as the body too. Nested JSON objects flatten into dashed names, so
//! `{"health": {"interval": "2s"}}` is the parameter `health-interval`.
//!
//! Values keep their source's type until a handler asks for one: `"10"` from a form and `10`
//! from JSON are both a valid integer, while `"ten"` or `true` give a 400 naming the parameter.

use std::time::Duration;

use director_core::{
    config::ConfigDuration,
    weight::{Weight, WeightError},
};
use http::StatusCode;
use serde_json::{Value as Json, json};

use crate::error::ApiError;

/// One parameter's value, as its source gave it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// From a form body or the query string.
    Text(String),
    /// From a JSON body.
    Json(Json),
}

/// The parameters of one request, in the order given; a later duplicate replaces an earlier one.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Params {
    items: Vec<(String, Value)>,
}

/// What kind of body a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Form,
    Json,
}

impl BodyKind {
    /// The body kind a `Content-Type` names: none or `application/x-www-form-urlencoded` is a
    /// form (x0 parsed every body as one), `application/json` or `*/*+json` is JSON, anything
    /// else is refused with 415.
    pub(crate) fn of(content_type: Option<&str>) -> Result<BodyKind, ApiError> {
        let Some(ct) = content_type else {
            return Ok(BodyKind::Form);
        };
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "" | "application/x-www-form-urlencoded" => Ok(BodyKind::Form),
            "application/json" => Ok(BodyKind::Json),
            e if e.starts_with("application/") && e.ends_with("+json") => Ok(BodyKind::Json),
            _ => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported content type {ct:?}"),
                json!({ "accepted": ["application/x-www-form-urlencoded", "application/json"] }),
            )),
        }
    }
}

impl Params {
    /// Parses `body` (of `kind`) and then `query`, whose values win.
    pub(crate) fn parse(
        kind: BodyKind,
        body: &[u8],
        query: Option<&str>,
    ) -> Result<Params, ApiError> {
        let mut params = Params::default();
        if !body.iter().all(u8::is_ascii_whitespace) {
            match kind {
                BodyKind::Form => {
                    for (k, v) in form_urlencoded::parse(body) {
                        params.insert(k.into_owned(), Value::Text(v.into_owned()));
                    }
                }
                BodyKind::Json => {
                    let value: Json = serde_json::from_slice(body).map_err(|e| {
                        ApiError::new(
                            StatusCode::BAD_REQUEST,
                            format!("malformed JSON body: {e}"),
                            json!({ "line": e.line(), "column": e.column() }),
                        )
                    })?;
                    let Json::Object(map) = value else {
                        return Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "a JSON body is an object of parameters",
                            Json::Null,
                        ));
                    };
                    flatten(&mut params, "", map);
                }
            }
        }
        if let Some(query) = query {
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                params.insert(k.into_owned(), Value::Text(v.into_owned()));
            }
        }
        Ok(params)
    }

    /// Parameters from `(key, text)` pairs (tests and internal callers).
    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Params {
        let mut params = Params::default();
        for (k, v) in pairs {
            params.insert((*k).to_owned(), Value::Text((*v).to_owned()));
        }
        params
    }

    fn insert(&mut self, key: String, value: Value) {
        match self.items.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.items.push((key, value)),
        }
    }

    /// Removes and returns a parameter.
    pub(crate) fn take(&mut self, key: &str) -> Option<Value> {
        let at = self.items.iter().position(|(k, _)| k == key)?;
        Some(self.items.remove(at).1)
    }

    /// A parameter by name.
    pub(crate) fn get(&self, key: &str) -> Option<Param<'_>> {
        self.iter().find(|p| p.key == key)
    }

    /// Every parameter, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Param<'_>> {
        self.items.iter().map(|(k, v)| Param { key: k, value: v })
    }

    /// Splits into the parameters named in `keys` and the others.
    pub(crate) fn partition(self, keys: &[&str]) -> (Params, Params) {
        let (inside, outside) = self
            .items
            .into_iter()
            .partition(|(k, _)| keys.contains(&k.as_str()));
        (Params { items: inside }, Params { items: outside })
    }

    /// Sets a parameter to a text value.
    pub(crate) fn set_text(&mut self, key: &str, value: &str) {
        self.insert(key.to_owned(), Value::Text(value.to_owned()));
    }

    /// Whether the only parameters are among `keys`.
    pub(crate) fn only(&self, keys: &[&str]) -> bool {
        self.items.iter().all(|(k, _)| keys.contains(&k.as_str()))
    }
}

fn flatten(params: &mut Params, prefix: &str, map: serde_json::Map<String, Json>) {
    for (k, v) in map {
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}-{k}")
        };
        match v {
            Json::Object(inner) => flatten(params, &key, inner),
            other => params.insert(key, Value::Json(other)),
        }
    }
}

/// One parameter, with typed readers that name it when its value does not fit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Param<'a> {
    pub(crate) key: &'a str,
    pub(crate) value: &'a Value,
}

impl Param<'_> {
    fn bad(&self, what: &str) -> ApiError {
        let shown = match self.value {
            Value::Text(t) => Json::String(t.clone()),
            Value::Json(j) => j.clone(),
        };
        let mut e = ApiError::field(self.key, format!("expected {what}"));
        e.detail["value"] = shown;
        e
    }

    /// Whether the value says "unset" (an empty form value or JSON `null`): optional settings
    /// go back to their default.
    pub(crate) fn is_unset(&self) -> bool {
        match self.value {
            Value::Text(t) => t.is_empty(),
            Value::Json(j) => j.is_null(),
        }
    }

    /// `true`/`false`/`1`/`0`, as x0.
    pub(crate) fn bool(&self) -> Result<bool, ApiError> {
        let text = match self.value {
            Value::Json(Json::Bool(b)) => return Ok(*b),
            Value::Json(Json::Number(n)) => n.to_string(),
            Value::Json(_) => return Err(self.bad("a boolean (true, false, 1, 0)")),
            Value::Text(t) => t.trim().to_owned(),
        };
        match text.as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(self.bad("a boolean (true, false, 1, 0)")),
        }
    }

    /// A whole number that fits `T`; a negative one is refused by name.
    pub(crate) fn uint<T: TryFrom<u64>>(&self) -> Result<T, ApiError> {
        let n: i128 = match self.value {
            Value::Json(Json::Number(n)) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => i.into(),
                (_, Some(u)) => u.into(),
                _ => return Err(self.bad("a whole number")),
            },
            Value::Json(_) => return Err(self.bad("a whole number")),
            Value::Text(t) => t.trim().parse().map_err(|_| self.bad("a whole number"))?,
        };
        if n < 0 {
            let mut e = ApiError::field(self.key, "must not be negative");
            e.detail["value"] = json!(n as i64);
            return Err(e);
        }
        u64::try_from(n)
            .ok()
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| self.bad("a smaller whole number"))
    }

    /// A finite number.
    pub(crate) fn float(&self) -> Result<f64, ApiError> {
        let f = match self.value {
            Value::Json(Json::Number(n)) => n.as_f64(),
            Value::Json(_) => None,
            Value::Text(t) => t.trim().parse::<f64>().ok(),
        };
        f.filter(|f| f.is_finite())
            .ok_or_else(|| self.bad("a number"))
    }

    /// A backend weight: a number from 0 to 1000000, whole or not (`10`, `10.0`, `0.5`).
    pub(crate) fn weight(&self) -> Result<Weight, ApiError> {
        let parsed = match self.value {
            Value::Json(Json::Number(n)) => n
                .as_f64()
                .ok_or(WeightError::NotANumber)
                .and_then(Weight::new),
            Value::Json(_) => Err(WeightError::NotANumber),
            Value::Text(t) => t.parse::<Weight>(),
        };
        parsed.map_err(|e| {
            let mut err = ApiError::field(self.key, e.to_string());
            err.detail["value"] = match self.value {
                Value::Text(t) => Json::String(t.clone()),
                Value::Json(j) => j.clone(),
            };
            err
        })
    }

    /// A duration: a number of seconds (x0's unit) or a string with a unit (`"250ms"`, `"10s"`).
    pub(crate) fn duration(&self) -> Result<ConfigDuration, ApiError> {
        let parsed = match self.value {
            Value::Json(Json::Number(n)) => match n.as_f64() {
                Some(s) if s >= 0.0 => Duration::try_from_secs_f64(s)
                    .map(ConfigDuration)
                    .map_err(|e| e.to_string()),
                _ => Err("a duration cannot be negative".to_owned()),
            },
            Value::Json(Json::String(s)) | Value::Text(s) => ConfigDuration::parse(s),
            Value::Json(_) => Err("expected seconds or a string such as \"250ms\"".to_owned()),
        };
        parsed.map_err(|m| {
            let mut e = self.bad("a duration: seconds, or a string such as \"10s\" or \"250ms\"");
            e.detail["reason"] = Json::String(m);
            e
        })
    }

    /// An optional duration: unset gives `None`.
    pub(crate) fn opt_duration(&self) -> Result<Option<ConfigDuration>, ApiError> {
        if self.is_unset() {
            return Ok(None);
        }
        self.duration().map(Some)
    }

    /// Whole seconds (x0's `retry-after`): a number or a duration string.
    pub(crate) fn whole_secs(&self) -> Result<u32, ApiError> {
        let d = self.duration()?.0;
        if d.subsec_nanos() != 0 {
            return Err(self.bad("whole seconds"));
        }
        u32::try_from(d.as_secs()).map_err(|_| self.bad("fewer seconds"))
    }

    /// A string (a JSON number or boolean is taken as its text).
    pub(crate) fn text(&self) -> Result<String, ApiError> {
        match self.value {
            Value::Text(t) => Ok(t.clone()),
            Value::Json(Json::String(s)) => Ok(s.clone()),
            Value::Json(j @ (Json::Number(_) | Json::Bool(_))) => Ok(j.to_string()),
            Value::Json(_) => Err(self.bad("a string")),
        }
    }

    /// An optional string: unset gives `None`.
    pub(crate) fn opt_text(&self) -> Result<Option<String>, ApiError> {
        if self.is_unset() {
            return Ok(None);
        }
        self.text().map(Some)
    }

    /// One of `choices`.
    pub(crate) fn choice(&self, choices: &[&str]) -> Result<String, ApiError> {
        let text = self.text()?;
        if choices.contains(&text.as_str()) {
            Ok(text)
        } else {
            Err(self.bad(&format!("one of {}", choices.join(", "))))
        }
    }

    /// A list: a JSON array of strings or numbers, or comma-separated text.
    pub(crate) fn list(&self) -> Result<Vec<String>, ApiError> {
        match self.value {
            Value::Text(t) => Ok(t
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()),
            Value::Json(Json::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Json::String(s) => Ok(s.clone()),
                    Json::Number(n) => Ok(n.to_string()),
                    _ => Err(self.bad("a list of strings")),
                })
                .collect(),
            Value::Json(_) => Err(self.bad("a list (a JSON array or comma-separated text)")),
        }
    }

    /// A list whose items parse as `T`.
    pub(crate) fn parsed_list<T: std::str::FromStr>(&self, what: &str) -> Result<Vec<T>, ApiError> {
        self.list()?
            .iter()
            .map(|s| s.parse().map_err(|_| self.bad(what)))
            .collect()
    }
}

#[cfg(test)]
mod tests;
