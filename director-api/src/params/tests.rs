use super::*;

fn json(body: &str) -> Result<Params, ApiError> {
    Params::parse(BodyKind::Json, body.as_bytes(), None)
}

#[test]
fn content_types() {
    assert_eq!(BodyKind::of(None).unwrap(), BodyKind::Form);
    assert_eq!(
        BodyKind::of(Some("application/x-www-form-urlencoded; charset=utf-8")).unwrap(),
        BodyKind::Form
    );
    assert_eq!(
        BodyKind::of(Some("Application/JSON")).unwrap(),
        BodyKind::Json
    );
    assert_eq!(
        BodyKind::of(Some("application/merge-patch+json")).unwrap(),
        BodyKind::Json
    );
    assert_eq!(BodyKind::of(Some("text/plain")).unwrap_err().status, 415);
    assert_eq!(
        BodyKind::of(Some("multipart/form-data; boundary=x"))
            .unwrap_err()
            .status,
        415
    );
}

#[test]
fn form_then_query_and_the_query_wins() {
    let p = Params::parse(BodyKind::Form, b"a=1&b=two%20words&a=3", Some("b=q&c=")).unwrap();
    let pairs: Vec<_> = p.iter().map(|p| (p.key, p.text().unwrap())).collect();
    assert_eq!(
        pairs,
        [
            ("a", "3".to_owned()),
            ("b", "q".to_owned()),
            ("c", String::new())
        ]
    );
    assert!(p.get("c").unwrap().is_unset());
}

#[test]
fn json_objects_flatten_into_dashed_names() {
    let p = json(r#"{"capacity": 4, "health": {"interval": "2s", "rise": 3}, "x": null}"#).unwrap();
    let keys: Vec<_> = p.iter().map(|p| p.key).collect();
    assert_eq!(keys, ["capacity", "health-interval", "health-rise", "x"]);
    assert_eq!(p.get("capacity").unwrap().uint::<u32>().unwrap(), 4);
    assert!(p.get("x").unwrap().is_unset());
}

#[test]
fn malformed_json_is_400_with_its_position() {
    let e = json("{\"a\": ").unwrap_err();
    assert_eq!(e.status, 400);
    assert!(
        e.message.starts_with("malformed JSON body"),
        "{}",
        e.message
    );
    assert_eq!(e.detail["line"], 1);
    let e = json("[1, 2]").unwrap_err();
    assert_eq!(e.status, 400);
    assert!(e.message.contains("object"), "{}", e.message);
}

#[test]
fn empty_bodies_have_no_parameters() {
    assert_eq!(
        Params::parse(BodyKind::Json, b"  \n", None).unwrap(),
        Params::default()
    );
}

fn param(key: &'static str, value: Value) -> (String, Value) {
    (key.to_owned(), value)
}

fn check<T>(value: Value, read: impl Fn(Param<'_>) -> Result<T, ApiError>) -> Result<T, ApiError> {
    let (key, value) = param("k", value);
    read(Param {
        key: &key,
        value: &value,
    })
}

fn t(s: &str) -> Value {
    Value::Text(s.to_owned())
}
fn j(v: Json) -> Value {
    Value::Json(v)
}

#[test]
fn booleans_as_x0() {
    for (v, want) in [
        (t("true"), true),
        (t("1"), true),
        (t("false"), false),
        (t("0"), false),
    ] {
        assert_eq!(check(v, |p| p.bool()).unwrap(), want);
    }
    assert!(check(j(json!(true)), |p| p.bool()).unwrap());
    assert!(!check(j(json!(0)), |p| p.bool()).unwrap());
    for v in [t("yes"), t(""), j(json!("true")), j(json!(2)), j(json!([]))] {
        let e = check(v, |p| p.bool()).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.detail["field"], "k");
    }
}

#[test]
fn whole_numbers_refuse_negatives_by_name() {
    assert_eq!(check(t("12"), |p| p.uint::<u32>()).unwrap(), 12);
    assert_eq!(check(j(json!(12)), |p| p.uint::<usize>()).unwrap(), 12);
    let e = check(t("-1"), |p| p.uint::<u32>()).unwrap_err();
    assert!(e.message.contains("negative"), "{}", e.message);
    assert_eq!(e.detail["value"], -1);
    assert!(
        check(j(json!(-3)), |p| p.uint::<u32>())
            .unwrap_err()
            .message
            .contains("negative")
    );
    assert!(check(t("4.5"), |p| p.uint::<u32>()).is_err());
    assert!(check(j(json!(4.5)), |p| p.uint::<u32>()).is_err());
    assert!(check(t("garbage"), |p| p.uint::<u32>()).is_err());
    assert!(
        check(j(json!("4")), |p| p.uint::<u32>()).is_err(),
        "a JSON string is not a number"
    );
    assert!(check(t("70000"), |p| p.uint::<u16>()).is_err());
}

#[test]
fn durations_in_seconds_or_with_units() {
    let d = |v| check(v, |p| p.duration()).map(|d| d.0);
    assert_eq!(d(t("10")).unwrap(), Duration::from_secs(10));
    assert_eq!(d(t("250ms")).unwrap(), Duration::from_millis(250));
    assert_eq!(d(j(json!(1.5))).unwrap(), Duration::from_millis(1500));
    assert_eq!(d(j(json!("2m"))).unwrap(), Duration::from_secs(120));
    for bad in [
        t("ten"),
        t("-1"),
        j(json!(-1)),
        j(json!(true)),
        t("5 parsecs"),
    ] {
        let e = d(bad).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.detail["field"], "k");
    }
    assert_eq!(check(t(""), |p| p.opt_duration()).unwrap(), None);
    assert_eq!(check(t("3"), |p| p.whole_secs()).unwrap(), 3);
    assert!(check(t("1.5"), |p| p.whole_secs()).is_err());
}

#[test]
fn lists_and_choices() {
    assert_eq!(check(t("a, b,,c"), |p| p.list()).unwrap(), ["a", "b", "c"]);
    assert_eq!(
        check(j(json!([200, "204"])), |p| p.parsed_list::<u16>("codes")).unwrap(),
        [200, 204]
    );
    assert!(check(j(json!([{}])), |p| p.list()).is_err());
    assert_eq!(
        check(t("lazy"), |p| p.choice(&["lazy", "paranoid"])).unwrap(),
        "lazy"
    );
    assert!(check(t("eager"), |p| p.choice(&["lazy", "paranoid"])).is_err());
    assert!(check(j(json!({"a": 1})), |p| p.text()).is_err());
    assert_eq!(check(j(json!(3)), |p| p.text()).unwrap(), "3");
}
