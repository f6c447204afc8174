//! Python's values both ways, with real academy-py 1.0.0 peers at their
//! defaults (pickle), on academy-py's HTTP exchange, ours, the Redis
//! exchange and the hybrid exchange, with numpy 1.26 and numpy 2.x (the
//! venvs of ACADEMY_TEST_PYTHON_NUMPY1 and ACADEMY_TEST_PYTHON_NUMPY2):
//!
//! - a Python user with a default `Handle` calls a C echo agent with every
//!   value of tests/py/pickle_values.py (the pickle codec's test values:
//!   every row of the JSON forms' table) and gets each back, equal and of
//!   the same type;
//! - a C user calls a Python agent launched by academy's `Manager` that
//!   returns each of them, sees their JSON forms (arrays through
//!   academy_ndarray_read), and sends them back; C builds tuples, bytes,
//!   arrays and a dataclass that the Python agent receives as such;
//! - JSON-only agents, Python's and ours, answer plain calls and refuse
//!   pickle with a clear error, never a timeout;
//! - requests a C agent cannot read (bad pickles) get an error answer and
//!   serving goes on;
//! - examples-c/array_agent.c, called by a numpy user.

mod common;

use std::ffi::{c_char, c_void, CStr};
use std::ptr::{self, null_mut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use academy::ffi::academy_status::{self, *};
use academy::ffi::factory::{academy_hybrid_factory_new, academy_redis_factory_new};
use academy::ffi::messages::*;
use academy::ffi::pyvalue::*;
use academy::ffi::queue::*;
use academy::ffi::reply::*;
use academy::ffi::serve::*;
use academy::wire::pyjson;
use common::*;
use serde_json::{json, Value};

/// Reads JSON as the C API writes it (Python's NaN and Infinity too).
fn parse(text: &str) -> Value {
    pyjson::loads(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

// ---- the exchanges ----

/// One exchange the tests run on: how C makes a factory for it and how a
/// Python peer names it (tests/py/pyvalues_peer.py's EXCHANGE).
struct Exchange {
    name: &'static str,
    /// The HTTP exchange's URL, or None for Redis and hybrid.
    url: Option<String>,
    /// The Redis and hybrid factories' options (without extras).
    options: Value,
    spec: String,
    _redis: Option<Arc<RedisServer>>,
}

impl Exchange {
    fn http(name: &'static str, url: String) -> Exchange {
        Exchange {
            name,
            spec: format!("http,{url}"),
            url: Some(url),
            options: json!({}),
            _redis: None,
        }
    }

    /// A factory with the extra options `extra` (a JSON object).
    fn factory(&self, extra: Value) -> R<Factory> {
        let mut options = self.options.clone();
        options
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        if let Some(url) = &self.url {
            return Factory::new(url, Some(&options.to_string()));
        }
        let text = c(&options.to_string());
        let mut out = ptr::null_mut();
        check(unsafe {
            if self.name == "redis" {
                academy_redis_factory_new(text.as_ptr(), &mut out)
            } else {
                academy_hybrid_factory_new(text.as_ptr(), &mut out)
            }
        })?;
        Ok(Factory(out))
    }

    fn peer(&self, numpy: u32, mode: &str, args: &[&str]) -> PyPeer {
        let mut all = vec![mode, self.spec.as_str()];
        all.extend_from_slice(args);
        PyPeer::start_with(&python_numpy(numpy), "pyvalues_peer.py", &all)
    }
}

/// academy-py's HTTP exchange, ours, and academy-py's Redis and hybrid
/// exchanges on a Redis of their own.
fn all_exchanges() -> Vec<Exchange> {
    let redis = Arc::new(RedisServer::start());
    let ns = format!("t{}", uuid::Uuid::new_v4().simple());
    vec![
        Exchange::http("python", shared_python_exchange()),
        Exchange::http("ours", shared_embedded_exchange()),
        Exchange {
            name: "redis",
            url: None,
            options: json!({"hostname": "127.0.0.1", "port": redis.port}),
            spec: format!("redis,{}", redis.port),
            _redis: Some(redis.clone()),
        },
        Exchange {
            name: "hybrid",
            url: None,
            options: json!({"redis_host": "127.0.0.1", "redis_port": redis.port, "namespace": ns}),
            spec: format!("hybrid,{},{ns}", redis.port),
            _redis: Some(redis),
        },
    ]
}

// ---- a C agent, as a C program writes it with the C API ----

unsafe fn text(p: *const c_char) -> String {
    CStr::from_ptr(p).to_str().unwrap().to_owned()
}

/// "echo" returns its first argument (found with academy_json_get, so any
/// JSON form goes back untouched), "kwargs" its keyword arguments, "fail"
/// fails with its first argument's text.
unsafe extern "C" fn echo_agent(
    _: *mut c_void,
    action: *const c_char,
    args: *const c_char,
    kwargs: *const c_char,
    reply: *mut academy_reply,
) {
    let first = || {
        let mut out = null_mut();
        let status = academy_json_get(args, c("/0").as_ptr(), &mut out);
        (status == ACADEMY_OK).then(|| take_string(out))
    };
    match (text(action).as_str(), first()) {
        ("echo", Some(x)) => {
            let status = academy_reply_ok(reply, c(&x).as_ptr());
            if status != ACADEMY_OK {
                let why = c(&last_error());
                academy_reply_error(reply, why.as_ptr());
            }
        }
        ("kwargs", _) => {
            assert_eq!(academy_reply_ok(reply, kwargs), ACADEMY_OK);
        }
        ("fail", Some(why)) => {
            let why = c(parse(&why).as_str().unwrap());
            assert_eq!(academy_reply_error(reply, why.as_ptr()), ACADEMY_OK);
        }
        (other, _) => {
            let why = c(&format!("no action named {other} (or no argument)"));
            academy_reply_error(reply, why.as_ptr());
        }
    }
}

/// A C echo agent registered on `factory`, served on a thread (from a
/// completion queue if `queue`); the thread yields how serving ended.
struct CAgent {
    id: String,
    _client: Arc<Client>,
    serving: std::thread::JoinHandle<academy_status>,
    _registrar: Client,
}

impl CAgent {
    fn start(factory: &Factory, queue: bool) -> CAgent {
        let registrar = factory.user(None).unwrap();
        let reg = registrar
            .register_agent("cagent.Echo", Some("c-echo"))
            .unwrap();
        let client = Arc::new(factory.agent(&reg).unwrap());
        let serving = client.clone();
        let thread = std::thread::spawn(move || unsafe {
            if queue {
                serve_from_a_queue(&serving)
            } else {
                academy_agent_serve(serving.0, Some(echo_agent), null_mut())
            }
        });
        CAgent {
            id: agent_id_of(&reg),
            _client: client,
            serving: thread,
            _registrar: registrar,
        }
    }

    fn stopped(self) -> academy_status {
        self.serving.join().unwrap()
    }
}

/// academy_agent_serve_queue with the program's loop calling the echo
/// handler with each REQUEST event's fields, until ENDED.
unsafe fn serve_from_a_queue(agent: &Client) -> academy_status {
    let mut queue = null_mut();
    assert_eq!(academy_queue_new(&mut queue), ACADEMY_OK);
    assert_eq!(academy_agent_serve_queue(agent.0, queue, 9), ACADEMY_OK);
    loop {
        let mut event = null_mut();
        assert_eq!(academy_queue_poll(queue, 120.0, &mut event), ACADEMY_OK);
        let e = &*event;
        if e.kind == academy_event_kind::ACADEMY_EVENT_ENDED {
            let status = e.status;
            academy_event_free(event);
            academy_queue_free(queue);
            return status;
        }
        assert_eq!(e.kind, academy_event_kind::ACADEMY_EVENT_REQUEST);
        echo_agent(null_mut(), e.action, e.args_json, e.kwargs_json, e.reply);
        academy_event_free(event);
    }
}

// ---- Python calls C ----

#[test]
fn python_users_with_default_handles_get_every_value_back_from_a_c_agent() {
    for numpy in [1, 2] {
        for ex in all_exchanges() {
            eprintln!("-- numpy {numpy}, {} exchange", ex.name);
            let factory = ex.factory(json!({"max_concurrency": 4})).unwrap();
            // numpy 2's user talks to an agent served from a queue.
            let agent = CAgent::start(&factory, numpy == 2);
            let mut py = ex.peer(numpy, "user", &[&agent.id]);
            let count: usize = py.line().strip_prefix("values ").unwrap().parse().unwrap();
            let mut ok = 0;
            let mut failed = Vec::new();
            let rest = loop {
                let line = py.line();
                match line.split_once(' ') {
                    Some(("ok", _)) => ok += 1,
                    Some(("FAIL", _)) => failed.push(line),
                    _ => break line,
                }
            };
            assert!(failed.is_empty(), "{}: {failed:#?}", ex.name);
            assert!(count >= 120, "{count} values");
            assert_eq!(ok, count, "{}: every value comes back", ex.name);
            assert_eq!(rest, "kwargs True");
            assert_eq!(py.line(), "fail AcademyRemoteError it broke");
            assert_eq!(py.line(), "json answers {'py/tuple': [1, 'a']}");
            assert_eq!(py.line(), "json fail AcademyRemoteError json broke");
            assert_eq!(py.line(), "done");
            assert!(py.wait(Duration::from_secs(30)));
            assert_eq!(agent.stopped(), ACADEMY_OK, "{}", ex.name);
        }
    }
}

#[test]
fn a_c_agent_that_accepts_only_json_refuses_pickle_as_academy_py_does() {
    let ex = Exchange::http("ours", shared_embedded_exchange());
    let factory = ex
        .factory(json!({"allowed_deserializers": ["json"]}))
        .unwrap();
    let agent = CAgent::start(&factory, false);
    let mut py = ex.peer(2, "refused", &[&agent.id]);
    let refused = py.line();
    assert!(
        refused.starts_with("default DeserializationMethodProhibitedError ")
            && refused.contains("accepts only json"),
        "{refused}"
    );
    assert_eq!(py.line(), "json [1, 2]");
    assert_eq!(py.line(), "done");
    assert!(py.wait(Duration::from_secs(30)));
    assert_eq!(agent.stopped(), ACADEMY_OK);
}

// ---- C calls Python ----

/// The JSON forms a C user sees for some of the values of
/// tests/py/pickle_values.py, spelled out in full.
fn expected_forms() -> Vec<(&'static str, Value)> {
    vec![
        ("int_small", json!(7)),
        ("int_minus_64", parse("-9223372036854775808")),
        ("int_big", parse("1267650600228229401496703217721")),
        ("float", json!(1.5)),
        ("float_nan", parse("NaN")),
        ("float_minus_inf", parse("-Infinity")),
        ("float_minus_zero", parse("-0.0")),
        (
            "str_unicode",
            json!("h\u{e9}llo w\u{f6}rld \u{2713} \u{1F600} \u{4e2d}\u{6587}"),
        ),
        ("bytes", json!({"py/bytes": "AAH+/yBhYmM="})),
        ("bytes_empty", json!({"py/bytes": ""})),
        ("bytearray", json!({"py/bytearray": "AP94eXo="})),
        ("tuple_empty", json!({"py/tuple": []})),
        (
            "tuple_nested",
            json!({"py/tuple": [1, {"py/tuple": [2, {"py/tuple": [3, {"py/tuple": []}]}]}, "x"]}),
        ),
        ("set", json!({"py/set": [1, 2, 3]})),
        ("frozenset_empty", json!({"py/frozenset": []})),
        (
            "dict_int_keys",
            json!({"py/dict": [[1, "one"], [2, "two"]]}),
        ),
        (
            "dict_tuple_keys",
            json!({"py/dict": [[{"py/tuple": [1, 2]}, "pair"], [{"py/tuple": []}, "empty"]]}),
        ),
        (
            "dict_py_key",
            json!({"py/dict": [["py/tuple", [1]], ["plain", 2]]}),
        ),
        ("complex", json!({"py/complex": [1.5, -2.0]})),
        ("none", json!(null)),
        ("true", json!(true)),
        ("list", json!([1, "a", null, 2.5])),
        (
            "point",
            json!({"py/object": "pickle_values:Point", "state": {"x": 1, "y": 2.5}}),
        ),
        (
            "frozen",
            json!({"py/object": "pickle_values:Frozen",
                   "state": {"name": "f", "tags": {"py/tuple": [1, 2]}}}),
        ),
        (
            "enum",
            json!({"py/reduce": {"callable": "pickle_values:Color", "args": [1]}}),
        ),
        (
            "decimal",
            json!({"py/reduce": {"callable": "decimal:Decimal", "args": ["3.14159265358979323846"]}}),
        ),
        ("class", json!({"py/global": "pickle_values:Point"})),
        (
            "np_scalar_f8",
            json!({"py/npscalar": {"dtype": "<f8", "value": 1.5}}),
        ),
        (
            "np_scalar_i4",
            json!({"py/npscalar": {"dtype": "<i4", "value": -3}}),
        ),
    ]
}

/// Values that an academy-py 1.0.0 agent cannot return at all, whoever
/// calls it: `np_shared` is a list of two numpy arrays, and academy-py's
/// `ActionResponse` asks whether a two-item list's first item equals
/// "__serialized__" before it serializes it, which a numpy array answers
/// with an array (ValueError): the agent's runtime raises while sending and
/// no answer comes. (A C agent returns it; see the Python users' test.)
const ACADEMY_PY_CANNOT_RETURN: [&str; 1] = ["np_shared"];

/// An array as academy_ndarray_read gives it: (dtype, kind, shape, order,
/// data).
type Array = (String, char, Vec<usize>, char, Vec<u8>);

/// An array read with academy_ndarray_read from `json`.
fn read_array(json: &str) -> R<Array> {
    let j = c(json);
    let mut a = null_mut();
    check(unsafe { academy_ndarray_read(j.as_ptr(), ptr::null(), &mut a) })?;
    unsafe {
        let r = &*a;
        let shape = if r.ndim == 0 {
            assert!(r.shape.is_null());
            Vec::new()
        } else {
            std::slice::from_raw_parts(r.shape, r.ndim).to_vec()
        };
        assert!(!r.data.is_null());
        assert_eq!(r.data as usize % 16, 0, "data is aligned for any element");
        assert_eq!(r.nbytes, shape.iter().product::<usize>() * r.itemsize);
        let data = std::slice::from_raw_parts(r.data as *const u8, r.nbytes).to_vec();
        let out = (
            text(r.dtype),
            r.kind as u8 as char,
            shape,
            r.order as u8 as char,
            data,
        );
        academy_ndarray_free(a);
        Ok(out)
    }
}

fn f64s(data: &[u8]) -> Vec<f64> {
    data.chunks_exact(8)
        .map(|b| f64::from_ne_bytes(b.try_into().unwrap()))
        .collect()
}

fn i64s(data: &[u8], size: usize) -> Vec<i64> {
    data.chunks_exact(size)
        .map(|b| match size {
            1 => b[0] as i64,
            4 => i32::from_ne_bytes(b.try_into().unwrap()) as i64,
            8 => i64::from_ne_bytes(b.try_into().unwrap()),
            _ => unreachable!(),
        })
        .collect()
}

fn f32s(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(4)
        .map(|b| f32::from_ne_bytes(b.try_into().unwrap()))
        .collect()
}

/// The arrays of tests/py/pickle_values.py as a C program reads them.
fn check_arrays(get: &dyn Fn(&str) -> String) {
    let (dtype, kind, shape, order, data) = read_array(&get("np_f8")).unwrap();
    assert_eq!(
        (dtype.as_str(), kind, shape, order),
        ("<f8", 'f', vec![3, 4], 'C')
    );
    assert_eq!(
        f64s(&data),
        (0..12).map(|i| i as f64 / 3.0).collect::<Vec<_>>()
    );
    let (dtype, _, shape, order, data) = read_array(&get("np_fortran")).unwrap();
    assert_eq!((dtype.as_str(), shape, order), ("<i8", vec![3, 4], 'F'));
    assert_eq!(
        i64s(&data, 8),
        [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11],
        "column-major"
    );
    let (dtype, kind, _, _, data) = read_array(&get("np_u1")).unwrap();
    assert_eq!((dtype.as_str(), kind, data), ("|u1", 'u', vec![0, 255]));
    let (dtype, kind, _, _, data) = read_array(&get("np_bool")).unwrap();
    assert_eq!((dtype.as_str(), kind, data), ("|b1", 'b', vec![1, 0, 1]));
    let (dtype, kind, shape, _, data) = read_array(&get("np_c16")).unwrap();
    assert_eq!((dtype.as_str(), kind, shape), ("<c16", 'c', vec![2, 1]));
    assert_eq!(f64s(&data), [1.0, 2.0, 3.0, -4.0]);
    let (dtype, _, shape, _, data) = read_array(&get("np_i4")).unwrap();
    assert_eq!((dtype.as_str(), shape), ("<i4", vec![10]));
    assert_eq!(i64s(&data, 4), (-5..5).collect::<Vec<_>>());
    let (dtype, _, _, _, data) = read_array(&get("np_f4")).unwrap();
    assert_eq!(dtype, "<f4");
    let linspace = [
        0.0,
        0.1666666716337204,
        0.3333333432674408,
        0.5,
        0.6666666865348816,
        0.8333333134651184,
        1.0,
    ];
    assert_eq!(f32s(&data), linspace.map(|x: f64| x as f32));
    let (_, _, shape, _, data) = read_array(&get("np_0d")).unwrap();
    assert_eq!((shape, f64s(&data)), (vec![], vec![2.5]));
    let (_, _, shape, _, data) = read_array(&get("np_empty_2d")).unwrap();
    assert_eq!((shape, data.len()), (vec![2, 0], 0));
    // Big-endian on the wire, this machine's order in C.
    assert_eq!(
        parse(&get("np_big_endian_f8"))["py/ndarray"]["dtype"],
        ">f8"
    );
    let (dtype, _, _, _, data) = read_array(&get("np_big_endian_f8")).unwrap();
    assert_eq!(
        (dtype.as_str(), f64s(&data)),
        ("<f8", vec![0.0, 1.0, 2.0, 3.0])
    );
    // Arrays with no typed buffer, refused by their dtype's name.
    for (name, dtype) in [
        ("np_str", "\"<U3\""),
        ("np_datetime", "\"<M8[D]\""),
        ("np_object", "\"|O8\""),
        ("np_structured", "\"|V12\""),
    ] {
        let refused = expect_err(read_array(&get(name)), ACADEMY_ERR_INVALID_ARGUMENT);
        assert!(refused.contains(dtype), "{name}: {refused}");
    }
    // Not an array at all.
    let refused = expect_err(read_array(&get("tuple_one")), ACADEMY_ERR_INVALID_ARGUMENT);
    assert!(refused.contains("py/ndarray"), "{refused}");
}

/// What a C user checks of the Python Values agent: every value's JSON form
/// and its way back; values C builds; errors.
fn c_user_checks(user: &Client, agent: &str) {
    let call = |action: &str, args: &Value| {
        user.action(agent, action, Some(&args.to_string()), None, 60.0)
    };
    let names: Vec<String> = serde_json::from_str(&call("names", &json!([])).unwrap()).unwrap();
    assert!(names.len() >= 120, "{names:?}");
    let get = |name: &str| call("value", &json!([name])).unwrap();
    for (name, want) in expected_forms() {
        assert_eq!(parse(&get(name)), want, "{name}");
    }
    let datetime = parse(&get("datetime_tz"));
    assert_eq!(
        datetime["py/reduce"]["callable"], "datetime:datetime",
        "{datetime}"
    );
    check_arrays(&get);
    // Every value goes back to Python as what it was.
    for name in names
        .iter()
        .filter(|n| !ACADEMY_PY_CANNOT_RETURN.contains(&n.as_str()))
    {
        let form = parse(&get(name));
        // (Not json!: it would reparse the NaN it holds as a number.)
        let args = Value::Array(vec![json!(name), form]);
        let back = call("same_as", &args).unwrap();
        assert_eq!(back, "true", "{name}: {back}");
    }
    // Values C builds.
    let describe = |x: &str| {
        let args = format!("[{x}]");
        let r = user
            .action(agent, "describe", Some(&args), None, 60.0)
            .unwrap();
        parse(&r).as_str().unwrap().to_owned()
    };
    assert_eq!(
        describe(r#"{"py/tuple": [1, "a", {"py/tuple": []}]}"#),
        "builtins.tuple (1, 'a', ())"
    );
    assert_eq!(
        describe(&bytes_json(b"\x00\xffab")),
        r"builtins.bytes b'\x00\xffab'"
    );
    assert_eq!(describe(&bytes_json(b"")), "builtins.bytes b''");
    let data: Vec<u8> = [1.5f64, 2.0, 3.0, 4.0, 5.0, 6.5]
        .iter()
        .flat_map(|f| f.to_ne_bytes())
        .collect();
    assert_eq!(
        describe(&array_json("=f8", &[2, 3], 'C', &data).unwrap()),
        "ndarray <f8 [2, 3] C [[1.5, 2.0, 3.0], [4.0, 5.0, 6.5]]"
    );
    assert_eq!(
        describe(&array_json("f8", &[2, 3], 'F', &data).unwrap()),
        "ndarray <f8 [2, 3] F [[1.5, 3.0, 5.0], [2.0, 4.0, 6.5]]"
    );
    let ints: Vec<u8> = [1i32, -2].iter().flat_map(|i| i.to_be_bytes()).collect();
    assert_eq!(
        describe(&array_json(">i4", &[2], 'C', &ints).unwrap()),
        // numpy loads a big-endian array in this machine's byte order.
        "ndarray <i4 [2] C [1, -2]"
    );
    assert_eq!(
        describe(&array_json("|b1", &[], 'C', &[1]).unwrap()),
        "ndarray |b1 [] C True"
    );
    assert_eq!(
        describe(r#"{"py/object": "pickle_values:Point", "state": {"x": 1, "y": 2.5}}"#),
        "pickle_values.Point Point(x=1, y=2.5)"
    );
    assert_eq!(describe(r#"{"py/set": [1]}"#), "builtins.set {1}");
    // Plain JSON stays plain: a list is a list.
    assert_eq!(describe("[1, 2]"), "builtins.list [1, 2]");
    // The result of an action with a py/ form comes back decoded too.
    assert_eq!(
        call("echo", &json!([{"py/tuple": [1, {"py/bytes": "AA=="}]}])).unwrap(),
        r#"{"py/tuple":[1,{"py/bytes":"AA=="}]}"#
    );
    assert_eq!(call("add", &json!([2, 3])).unwrap(), "5");
    let failed = expect_err(call("fail", &json!([])), ACADEMY_ERR_REMOTE);
    assert!(
        failed.contains("Traceback") && failed.contains("ValueError: boom"),
        "{failed}"
    );
    // A py/ form that cannot be pickled is the caller's error.
    let bad = expect_err(
        call("echo", &json!([{"py/tuple": 5}])),
        ACADEMY_ERR_INVALID_ARGUMENT,
    );
    assert!(bad.contains("py/tuple"), "{bad}");
}

fn bytes_json(data: &[u8]) -> String {
    let mut out = null_mut();
    check(unsafe { academy_bytes_write(data.as_ptr().cast(), data.len(), &mut out) }).unwrap();
    take_string(out)
}

fn array_json(dtype: &str, shape: &[usize], order: char, data: &[u8]) -> R<String> {
    let dtype = c(dtype);
    let mut out = null_mut();
    check(unsafe {
        academy_ndarray_write(
            dtype.as_ptr(),
            shape.len(),
            if shape.is_empty() {
                ptr::null()
            } else {
                shape.as_ptr()
            },
            order as u8 as c_char,
            data.as_ptr().cast(),
            &mut out,
        )
    })?;
    Ok(take_string(out))
}

#[test]
fn c_users_see_the_json_forms_of_python_values_and_send_them_back() {
    for numpy in [1, 2] {
        for ex in all_exchanges() {
            eprintln!("-- numpy {numpy}, {} exchange", ex.name);
            let mut py = ex.peer(numpy, "agent", &[]);
            let agent = py.line();
            let factory = ex.factory(json!({})).unwrap();
            let user = factory.user(None).unwrap();
            c_user_checks(&user, &agent);
            user.shutdown_agent(&agent, -1).unwrap();
            assert!(py.wait(Duration::from_secs(30)), "{}", ex.name);
        }
    }
}

// ---- JSON-only agents ----

fn request_as(serialization: &str, args: &str) -> String {
    let (action, args, s) = (c("echo"), c(args), c(serialization));
    let mut out = null_mut();
    check(unsafe {
        academy_action_request_body_as(
            action.as_ptr(),
            args.as_ptr(),
            ptr::null(),
            s.as_ptr(),
            &mut out,
        )
    })
    .unwrap();
    take_string(out)
}

#[test]
fn a_json_only_python_agent_answers_plain_calls_and_refuses_pickle_clearly() {
    for ex in all_exchanges() {
        eprintln!("-- {} exchange", ex.name);
        let mut py = ex.peer(2, "json-agent", &[]);
        let agent = py.line();
        let factory = ex.factory(json!({})).unwrap();
        let user = factory.user(None).unwrap();
        // Plain JSON arguments: a JSON request, whose result comes as pickle.
        assert_eq!(
            user.action(&agent, "add", Some("[2, 3]"), None, 30.0)
                .unwrap(),
            "5"
        );
        assert_eq!(
            user.action(&agent, "echo", Some("[[1, {\"a\": null}]]"), None, 30.0)
                .unwrap(),
            r#"[1,{"a":null}]"#
        );
        // A tuple goes as pickle, which this agent refuses: an error at once.
        let start = Instant::now();
        let refused = expect_err(
            user.action(&agent, "echo", Some(r#"[{"py/tuple": [1]}]"#), None, 30.0),
            ACADEMY_ERR_REMOTE,
        );
        assert!(
            refused.contains("DeserializationMethodProhibitedError"),
            "{refused}"
        );
        assert!(start.elapsed() < Duration::from_secs(10), "not a timeout");
        // The same forced per call, with a body of its own.
        let body = request_as("pickle", "[1]");
        assert_eq!(parse(&body)["serialization"], "pickle");
        let response = user.request(&agent, &body, 30.0).unwrap();
        let refused = expect_err(result_of(&response), ACADEMY_ERR_REMOTE);
        assert!(
            refused.contains("DeserializationMethodProhibitedError"),
            "{refused}"
        );
        // And JSON forced: the tuple's form arrives as a dict, and comes
        // back as the form of a dict with a py/ key.
        let body = request_as("json", r#"[{"py/tuple": [1]}]"#);
        let response = user.request(&agent, &body, 30.0).unwrap();
        assert_eq!(
            parse(&result_of(&response).unwrap()),
            json!({"py/dict": [["py/tuple", [1]]]})
        );
        let forced = ex
            .factory(json!({"request_serialization": "json"}))
            .unwrap();
        let json_user = forced.user(None).unwrap();
        assert_eq!(
            parse(
                &json_user
                    .action(&agent, "echo", Some(r#"[{"py/tuple": [1]}]"#), None, 30.0)
                    .unwrap()
            ),
            json!({"py/dict": [["py/tuple", [1]]]})
        );
        user.shutdown_agent(&agent, -1).unwrap();
        assert!(py.wait(Duration::from_secs(30)), "{}", ex.name);
    }
}

// ---- requests a C agent cannot read ----

#[test]
fn a_c_agent_answers_requests_it_cannot_read_and_goes_on_serving() {
    let ex = Exchange::http("ours", shared_embedded_exchange());
    let factory = ex.factory(json!({})).unwrap();
    let agent = CAgent::start(&factory, false);
    let user = factory.user(None).unwrap();
    let body = |serialization: &str, pargs: &str, exception: &str| {
        json!({"action": "echo", "serialization": serialization, "result_serialization": null,
               "exception_serialization": exception, "pargs": pargs, "kargs": "gAR9lC4=",
               "kind": "action-request"})
        .to_string()
    };
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let bad = [
        ("not base64", body("pickle", "!!!", "json")),
        ("not a pickle", body("pickle", &b64(b"hello"), "json")),
        (
            "cut short",
            body("pickle", &b64(b"\x80\x04\x95\x10\x00\x00\x00"), "json"),
        ),
        // BINUNICODE claiming 4 GiB.
        (
            "a huge claimed length",
            body("pickle", &b64(b"\x80\x04X\xff\xff\xff\xff"), "json"),
        ),
        (
            "a list that holds itself",
            body("pickle", &b64(b"\x80\x04]\x94h\x00a\x85\x94."), "json"),
        ),
        (
            "a dict, not a tuple",
            body("pickle", &b64(b"\x80\x04}\x94."), "json"),
        ),
        ("an unknown serialization", body("yaml", "[1]", "json")),
        ("answered as pickle", body("pickle", "!!!", "pickle")),
    ];
    for (what, request) in &bad {
        let response = user.request(&agent.id, request, 30.0).unwrap();
        let error = expect_err(result_of(&response), ACADEMY_ERR_REMOTE);
        eprintln!("{what}: {error}");
        assert!(!error.is_empty(), "{what}");
        if what.starts_with("answered as pickle") {
            assert_eq!(parse(&response)["body"]["serialization"], "pickle");
            assert!(
                error.starts_with("academy.exception.AcademyRemoteError: "),
                "{error}"
            );
        }
    }
    // Serving went on.
    assert_eq!(
        user.action(&agent.id, "echo", Some(r#"[{"py/set": [1]}]"#), None, 30.0)
            .unwrap(),
        r#"{"py/set":[1]}"#
    );
    user.shutdown_agent(&agent.id, -1).unwrap();
    assert_eq!(agent.stopped(), ACADEMY_OK);
}

// ---- the example ----

#[test]
fn the_array_agent_example_serves_numpy_users_with_academy_pys_defaults() {
    let example = repo().join("examples-c/build/array_agent");
    assert!(
        example.exists(),
        "{} is missing: build the examples with `make examples` (scripts/test.sh does)",
        example.display()
    );
    let exchange = OurExchange::start("");
    for numpy in [1, 2] {
        let (mut agent, id) =
            spawn_with_first_line(std::process::Command::new(&example).arg(&exchange.url));
        let mut py = PyPeer::start_with(
            &python_numpy(numpy),
            "call_array_agent.py",
            &[&exchange.url, &id],
        );
        let mut lines = Vec::new();
        loop {
            let line = py.line();
            if line == "done" {
                break;
            }
            lines.push(line);
        }
        assert!(lines.iter().all(|l| l.starts_with("ok ")), "{lines:#?}");
        assert!(lines.len() >= 5, "{lines:#?}");
        assert!(py.wait(Duration::from_secs(30)));
        assert!(
            agent.wait().unwrap().success(),
            "array_agent exits 0 after shutdown"
        );
    }
}
