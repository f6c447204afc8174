package academy

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// roundTrip marshals v and unmarshals the JSON into a new T.
func roundTrip[T any](t *testing.T, v any) (T, string) {
	t.Helper()
	text, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %#v: %v", v, err)
	}
	var back T
	if err := json.Unmarshal(text, &back); err != nil {
		t.Fatalf("unmarshal %s: %v", text, err)
	}
	return back, string(text)
}

// checkElements makes an array of values in both orders, sends it through
// its JSON form and reads the same elements back.
func checkElements[T Element](t *testing.T, dtype string, values []T, shape ...int) {
	t.Helper()
	for _, order := range []Order{RowMajor, ColumnMajor} {
		a, err := NewNDArrayOrder(values, order, shape...)
		if err != nil {
			t.Fatal(err)
		}
		back, text := roundTrip[NDArray](t, a)
		if back.Dtype != dtype || !slices.Equal(back.Shape, shape) || back.Order != order {
			t.Fatalf("%s %c: read back as %s %v %c from %s", dtype, order, back.Dtype, back.Shape, back.Order, text)
		}
		got, err := Elements[T](&back)
		if err != nil || !slices.Equal(got, values) {
			t.Fatalf("%s %c: %v, %v; want %v", dtype, order, got, err, values)
		}
	}
}

func TestNDArraysOfEveryElementTypeRoundTrip(t *testing.T) {
	checkElements(t, "<f8", []float64{0, -1.5, math.Inf(1), math.MaxFloat64, 1e-300, 6}, 2, 3)
	checkElements(t, "<f4", []float32{1.25, -2, 3}, 3)
	checkElements(t, "<i8", []int64{math.MinInt64, -1, 0, math.MaxInt64}, 2, 2)
	checkElements(t, "<i4", []int32{math.MinInt32, 7, math.MaxInt32}, 3, 1)
	checkElements(t, "<i2", []int16{-300, 300}, 2)
	checkElements(t, "|i1", []int8{-128, 127}, 1, 2)
	checkElements(t, "|u1", []uint8{0, 128, 255}, 3)
	checkElements(t, "<u2", []uint16{65535}, 1)
	checkElements(t, "<u4", []uint32{4294967295, 0}, 2)
	checkElements(t, "<u8", []uint64{math.MaxUint64}, 1, 1, 1)
	checkElements(t, "|b1", []bool{true, false, true, true}, 2, 2)
	checkElements(t, "<c16", []complex128{1 - 2i, complex(math.Inf(-1), 0.5)}, 2)
	checkElements(t, "<c8", []complex64{3 + 4i}, 1)
	checkElements(t, "<f8", []float64{2.5}, []int{}...) // 0-d: shape ()
	checkElements(t, "<f8", []float64{}, 0, 3)
}

// numpy's own form of np.arange(6, dtype="<f8").reshape(2, 3) (C order):
// the base64 of its 48 bytes, as academy-py's pickle reaches the library.
func numpyForm(t *testing.T, order string, elements ...float64) string {
	t.Helper()
	data := make([]byte, 8*len(elements))
	for i := range elements {
		bits := math.Float64bits(elements[i])
		for b := 0; b < 8; b++ { // little-endian, as "<f8" says
			data[8*i+b] = byte(bits >> (8 * b))
		}
	}
	return fmt.Sprintf(`{"py/ndarray": {"dtype": "<f8", "shape": [2, 3], "order": %q, "data": %q}}`,
		order, base64.StdEncoding.EncodeToString(data))
}

func TestIndexFindsAnElementInEitherOrder(t *testing.T) {
	// The same 2x3 array, a[i][j] = 10*i + j, laid out both ways.
	for _, c := range []struct {
		order    string
		elements []float64
	}{
		{"C", []float64{0, 1, 2, 10, 11, 12}},
		{"F", []float64{0, 10, 1, 11, 2, 12}},
	} {
		var a NDArray
		if err := json.Unmarshal([]byte(numpyForm(t, c.order, c.elements...)), &a); err != nil {
			t.Fatal(err)
		}
		x, err := Elements[float64](&a)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			for j := 0; j < 3; j++ {
				if got := x[a.Index(i, j)]; got != float64(10*i+j) {
					t.Fatalf("order %s: a[%d, %d] = %v", c.order, i, j, got)
				}
			}
		}
	}
}

func TestArraysAndBytesRefuseWhatTheyCannotBe(t *testing.T) {
	var a NDArray
	for _, text := range []string{
		`[1, 2]`,
		`{"py/bytes": "AAEC"}`,
		`{"py/ndarray": {"dtype": "<f8", "shape": [2, 3], "order": "C", "data": "AAAA"}}`,
		`{"py/ndarray": {"dtype": "<U3", "shape": [1], "order": "C", "data": "YQAAAGIAAABjAAAA"}}`,
	} {
		err := json.Unmarshal([]byte(text), &a)
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: want an invalid argument error, got %v", text, err)
		}
	}
	if _, err := Elements[int32](&NDArray{Dtype: "<f8", Shape: []int{1}, Data: make([]byte, 8)}); err == nil ||
		!strings.Contains(err.Error(), `"<f8", not "<i4"`) {
		t.Errorf("Elements of another dtype: %v", err)
	}
	if _, err := json.Marshal(NDArray{Dtype: "<f8", Shape: []int{2}, Data: make([]byte, 8)}); err == nil {
		t.Error("an array whose Data is shorter than its shape was marshaled")
	}
	if _, err := NewNDArray([]float64{1, 2, 3}, 2, 2); err == nil {
		t.Error("3 values in a 2x2 shape")
	}
	var b Bytes
	if err := json.Unmarshal([]byte(`{"py/bytes": "not base64!"}`), &b); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("bad base64: %v", err)
	}
}

func TestBytesTuplesDictsAndComplexHaveTheirForms(t *testing.T) {
	b, text := roundTrip[Bytes](t, Bytes{0, 1, 2, 255})
	if text != `{"py/bytes":"AAEC/w=="}` && text != `{"py/bytes": "AAEC/w=="}` || !slices.Equal(b, Bytes{0, 1, 2, 255}) {
		t.Fatalf("bytes: %s, %v", text, b)
	}
	if err := json.Unmarshal([]byte(`{"py/bytearray": "eHk="}`), &b); err != nil || string(b) != "xy" {
		t.Fatalf("bytearray: %q, %v", b, err)
	}
	if empty, text := roundTrip[Bytes](t, Bytes{}); len(empty) != 0 || !strings.Contains(text, `"py/bytes"`) {
		t.Fatalf("empty bytes: %s", text)
	}

	tuple, text := roundTrip[Tuple](t, Tuple{1, "two", Bytes("3")})
	if text != `{"py/tuple":[1,"two",{"py/bytes":"Mw=="}]}` && !strings.HasPrefix(text, `{"py/tuple":[1,"two",{"py/bytes": "Mw=="}`) {
		t.Fatalf("tuple: %s", text)
	}
	var third Bytes
	if len(tuple) != 3 || json.Unmarshal(tuple[2].(json.RawMessage), &third) != nil || string(third) != "3" {
		t.Fatalf("tuple items: %v", tuple)
	}

	dict, text := roundTrip[Dict](t, Dict{{1, "one"}, {Tuple{2, 3}, nil}})
	if !strings.HasPrefix(text, `{"py/dict":[[1,"one"],[{"py/tuple":[2,3]},null]]}`) || len(dict) != 2 ||
		string(dict[0].Key.(json.RawMessage)) != "1" || string(dict[1].Value.(json.RawMessage)) != "null" {
		t.Fatalf("dict: %s, %v", text, dict)
	}

	c, text := roundTrip[Complex](t, Complex(1.5-2i))
	if text != `{"py/complex":[1.5,-2]}` || c != 1.5-2i {
		t.Fatalf("complex: %s, %v", text, c)
	}
}

func TestUnpackReadsArgumentsAndTuples(t *testing.T) {
	var a NDArray
	var factor float64
	var name string
	args := fmt.Sprintf(`[%s, 2.5, "x"]`, numpyForm(t, "C", 0, 1, 2, 3, 4, 5))
	if err := Unpack(json.RawMessage(args), &a, &factor, &name); err != nil || factor != 2.5 || name != "x" ||
		!slices.Equal(a.Shape, []int{2, 3}) {
		t.Fatalf("unpack: %v %v %q %v", err, factor, name, a.Shape)
	}
	var first int
	if err := Unpack(json.RawMessage(`{"py/tuple": [7, "skipped"]}`), &first, nil); err != nil || first != 7 {
		t.Fatalf("unpack a tuple: %v %v", err, first)
	}
	if err := Unpack(json.RawMessage(`[1, 2]`), &first); err == nil {
		t.Fatal("two values unpacked into one")
	}
	if err := Unpack(json.RawMessage(`{"a": 1}`), &first); err == nil {
		t.Fatal("an object unpacked")
	}
}

// ---- a Python user (academy-py, default pickle requests) calls a Go agent ----

// numpyPython is the interpreter of a venv with academy-py 1.0.0 and
// numpy 2.x.
func numpyPython(t *testing.T) string {
	t.Helper()
	python := os.Getenv("ACADEMY_TEST_PYTHON_NUMPY2")
	if python == "" {
		t.Fatal("ACADEMY_TEST_PYTHON_NUMPY2 is not set: it names the python of a venv with academy-py==1.0.0 " +
			"and numpy 2.x, the Python peer of this test")
	}
	return python
}

// pythonPeer starts a program of tests/py with python; its stdin stays
// open until the test ends (the scripts exit when it closes). Its output
// lines come from the scanner (nil for quiet: its output is dropped).
func pythonPeer(t *testing.T, python string, quiet bool, script string, args ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(python, append([]string{filepath.Join("..", "tests", "py", script)}, args...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var lines *bufio.Scanner
	if !quiet {
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		lines = bufio.NewScanner(stdout)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", script, err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, lines
}

// pythonExchange starts academy-py's HTTP exchange on a free loopback port.
func pythonExchange(t *testing.T, python string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	port := addr[strings.LastIndex(addr, ":")+1:]
	config := filepath.Join(t.TempDir(), "exchange.toml")
	toml := fmt.Sprintf("host = \"127.0.0.1\"\nport = %s\n\n[backend]\nkind = \"python\"\n", port)
	if err := os.WriteFile(config, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	pythonPeer(t, python, true, "run_exchange.py", "--config", config)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return "http://" + addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("academy-py's exchange did not listen on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// arrayAgent serves the actions tests/py/call_values_agent.py calls, with
// the helpers of values.go.
func arrayAgent(action string, args, kwargs json.RawMessage) (any, error) {
	switch action {
	case "scale":
		var a NDArray
		var factor float64
		if err := Unpack(args, &a, &factor); err != nil {
			return nil, err
		}
		x, err := Elements[float64](&a)
		if err != nil {
			return nil, err
		}
		for i := range x {
			x[i] *= factor
		}
		return NewNDArrayOrder(x, a.Order, a.Shape...)
	case "row_sums":
		var a NDArray
		if err := Unpack(args, &a); err != nil {
			return nil, err
		}
		x, err := Elements[float64](&a)
		if err != nil || len(a.Shape) != 2 {
			return nil, fmt.Errorf("row_sums takes a 2-d float64 array, not %v %s (%v)", a.Shape, a.Dtype, err)
		}
		sums := make([]float64, a.Shape[0])
		for i := range sums {
			for j := 0; j < a.Shape[1]; j++ {
				sums[i] += x[a.Index(i, j)]
			}
		}
		return NewNDArray(sums)
	case "cumsum":
		var a NDArray
		if err := Unpack(args, &a); err != nil {
			return nil, err
		}
		x, err := Elements[int64](&a)
		if err != nil {
			return nil, err
		}
		for i := 1; i < len(x); i++ {
			x[i] += x[i-1]
		}
		return NewNDArray(x, a.Shape...)
	case "conj":
		var a NDArray
		if err := Unpack(args, &a); err != nil {
			return nil, err
		}
		z, err := Elements[complex128](&a)
		if err != nil {
			return nil, err
		}
		for i := range z {
			z[i] = complex(real(z[i]), -imag(z[i]))
		}
		return NewNDArray(z, a.Shape...)
	case "count":
		var a NDArray
		if err := Unpack(args, &a); err != nil {
			return nil, err
		}
		mask, err := Elements[bool](&a)
		n := 0
		for _, m := range mask {
			if m {
				n++
			}
		}
		return n, err
	case "reverse":
		var b Bytes
		if err := Unpack(args, &b); err != nil {
			return nil, err
		}
		slices.Reverse(b)
		return b, nil
	case "swap":
		var t Tuple
		if err := Unpack(args, &t); err != nil {
			return nil, err
		}
		slices.Reverse(t)
		return t, nil
	case "concat":
		var a, b Bytes
		if err := Unpack(args, &a, &b); err != nil {
			return nil, err
		}
		return append(a, b...), nil
	case "invert":
		var d Dict
		if err := Unpack(args, &d); err != nil {
			return nil, err
		}
		for i, kv := range d {
			d[i] = KeyValue{Key: kv.Value, Value: kv.Key}
		}
		return d, nil
	case "echo":
		var value json.RawMessage
		return value, Unpack(args, &value)
	}
	return nil, fmt.Errorf("no action %q", action)
}

// The lines tests/py/call_values_agent.py prints when the agent computes
// what it should.
var arrayAgentLines = []string{
	"scale ndarray <f8 (2, 3) [[0.0, 2.0, 4.0], [6.0, 8.0, 10.0]]",
	"row_sums ndarray <f8 (2,) [3.0, 12.0]",
	"row_sums F ndarray <f8 (2,) [3.0, 12.0]",
	"row_sums >f8 ndarray <f8 (2,) [3.0, 12.0]",
	"row_sums T ndarray <f8 (3,) [3.0, 5.0, 7.0]",
	"cumsum ndarray <i8 (4,) [1, 3, 6, 1099511627782]",
	"conj ndarray <c16 (2,) [(1+2j), (-3-0.5j)]",
	"count int 3",
	`reverse bytes b'\xff\x00cba'`,
	`wrong dtype AcademyRemoteError academy: the array's dtype is "<i4", not "<f8" (float64)`,
	"swap tuple (3.5, 'two', 1)",
	`concat bytes b'ab\x00\xff'`,
	"invert dict {'one': 1, 'two': 2}",
	"echo True",
	"done",
}

type namedExchange struct{ name, url string }

// bothExchanges are our embedded exchange and academy-py's HTTP exchange.
func bothExchanges(t *testing.T, python string) []namedExchange {
	return []namedExchange{{"embedded", exchange(t)}, {"academy-py", pythonExchange(t, python)}}
}

func TestAPythonUserWithDefaultPickleCallsAGoAgent(t *testing.T) {
	python := numpyPython(t)
	for _, ex := range bothExchanges(t, python) {
		t.Run(ex.name, func(t *testing.T) {
			_, agent, reg := userAndAgentAt(t, ex.url, nil, "gotest.ArrayAgent", "arrays")
			served := make(chan error, 1)
			go func() { served <- agent.Serve(arrayAgent) }()

			cmd, lines := pythonPeer(t, python, false, "call_values_agent.py", ex.url, agentID(t, reg), "values")
			var got []string
			for lines.Scan() {
				got = append(got, lines.Text())
			}
			if !reflect.DeepEqual(got, arrayAgentLines) {
				t.Fatalf("the Python user printed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(arrayAgentLines, "\n"))
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("the Python user: %v", err)
			}
			select {
			case err := <-served:
				if err != nil {
					t.Fatalf("serving ended with %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("serving did not end after the Python user's shutdown request")
			}
		})
	}
}

// ---- a Go user calls a Python agent with numpy (tests/py/numpy_agent.py) ----

func TestAGoUserCallsAPythonAgentWithNumpyArrays(t *testing.T) {
	python := numpyPython(t)
	for _, ex := range bothExchanges(t, python) {
		t.Run(ex.name, func(t *testing.T) {
			cmd, lines := pythonPeer(t, python, false, "numpy_agent.py", ex.url)
			if !lines.Scan() {
				t.Fatal("the Python agent printed no id")
			}
			id := lines.Text()
			_, user := userAt(t, ex.url, nil)
			call := func(action string, args ...any) json.RawMessage {
				t.Helper()
				result, err := user.Action(id, action, args, nil, 30*time.Second)
				if err != nil {
					t.Fatalf("%s%v: %v", action, args, err)
				}
				return result
			}

			// What the Python agent received, as it describes it.
			rows, _ := NewNDArray([]float64{0, 1, 2, 10, 11, 12}, 2, 3)
			cols, _ := NewNDArrayOrder([]float64{0, 10, 1, 11, 2, 12}, ColumnMajor, 2, 3)
			mask, _ := NewNDArray([]bool{true, false})
			for _, c := range []struct {
				value any
				want  string
			}{
				{rows, "ndarray <f8 (2, 3) [[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]] C"},
				{cols, "ndarray <f8 (2, 3) [[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]] F"},
				{mask, "ndarray |b1 (2,) [True, False] C"},
				{Bytes{0, 255}, `bytes b'\x00\xff'`},
				{Tuple{1, "a", Tuple{}}, "tuple (1, 'a', ())"},
				{Dict{{1, "one"}, {Tuple{2, 3}, nil}}, "dict {1: 'one', (2, 3): None}"},
				{Complex(1 + 2i), "complex (1+2j)"},
			} {
				var got string
				if err := json.Unmarshal(call("describe", c.value), &got); err != nil || got != c.want {
					t.Errorf("describe(%#v): %q (%v), want %q", c.value, got, err, c.want)
				}
			}

			// A numpy array computed by Python comes back as an NDArray.
			v, _ := NewNDArray([]int64{1, -2, 3})
			var scaled NDArray
			if err := json.Unmarshal(call("scale", v, 3), &scaled); err != nil {
				t.Fatal(err)
			}
			if x, err := Elements[int64](&scaled); err != nil || !slices.Equal(x, []int64{3, -6, 9}) {
				t.Errorf("scale: %v %v", x, err)
			}

			// A tuple of an int32 array, bytes, a dict with int keys and a complex.
			var a NDArray
			var b Bytes
			var d Dict
			var z Complex
			if err := Unpack(call("make"), &a, &b, &d, &z); err != nil {
				t.Fatal(err)
			}
			x, err := Elements[int32](&a)
			if err != nil || !slices.Equal(a.Shape, []int{2, 3}) || x[a.Index(1, 2)] != 5 || x[a.Index(0, 1)] != 1 {
				t.Errorf("make's array: %v %v %v", a.Shape, x, err)
			}
			if !slices.Equal(b, Bytes{0, 255}) || z != 1+2i || len(d) != 2 ||
				string(d[0].Key.(json.RawMessage)) != "1" || string(d[1].Value.(json.RawMessage)) != `"two"` {
				t.Errorf("make's other values: %v %v %v", b, d, z)
			}

			if err := user.ShutdownAgent(id, -1); err != nil {
				t.Fatal(err)
			}
			for lines.Scan() {
				t.Errorf("the Python agent printed %q", lines.Text())
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("the Python agent: %v", err)
			}
		})
	}
}
