// Package academy is the Go binding of libacademy: take part in Academy
// multi-agent systems (academy-py 1.0 wire compatible) from Go.
//
// The package finds libacademy with pkg-config (package "academy"). After
// `make install`, point PKG_CONFIG_PATH at <prefix>/lib/pkgconfig if the
// prefix is not a standard one. In the source tree, `cargo build --release`
// writes target/release/academy-uninstalled.pc, which pkg-config prefers:
//
//	PKG_CONFIG_PATH=$PWD/target/release go test ./go/...
//
// Every call is safe from many goroutines. The plain calls that talk to
// the exchange (Action, Ping, Serve...) block the calling goroutine and its
// OS thread; the _async calls (ActionAsync, PingAsync, RequestAsync) and
// ServeQueue go through a completion queue (Queue) whose fd waits on Go's
// runtime poller, so thousands of calls in flight cost parked goroutines,
// not threads.
package academy

/*
#cgo pkg-config: academy
#include <stdint.h>
#include <stdlib.h>
#include "academy.h"

extern void goActionHandler(void *user_data, char *action, char *args, char *kwargs, academy_reply *reply);
extern void goSendDone(void *user_data, enum academy_status status, char *error);

static enum academy_status send_async_go(struct academy_client *client, const char *message, uintptr_t handle) {
	return academy_client_send_async(client, message, (academy_send_done_fn)goSendDone, (void *)handle);
}

static enum academy_status serve_go(struct academy_client *client, uintptr_t handle) {
	return academy_agent_serve(client, (academy_action_fn)goActionHandler, (void *)handle);
}
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"runtime/cgo"
	"sync"
	"time"
	"unsafe"
)

// Status is a libacademy status code.
type Status int

// The status codes of the C API, taken from the header (fixed values).
const (
	StatusOK                Status = C.ACADEMY_OK
	StatusInvalidArgument   Status = C.ACADEMY_ERR_INVALID_ARGUMENT
	StatusTimeout           Status = C.ACADEMY_ERR_TIMEOUT
	StatusBadEntityID       Status = C.ACADEMY_ERR_BAD_ENTITY_ID
	StatusMailboxTerminated Status = C.ACADEMY_ERR_MAILBOX_TERMINATED
	StatusUnauthorized      Status = C.ACADEMY_ERR_UNAUTHORIZED
	StatusForbidden         Status = C.ACADEMY_ERR_FORBIDDEN
	StatusMessageTooLarge   Status = C.ACADEMY_ERR_MESSAGE_TOO_LARGE
	StatusBadRequest        Status = C.ACADEMY_ERR_BAD_REQUEST
	StatusConnection        Status = C.ACADEMY_ERR_CONNECTION
	StatusHTTP              Status = C.ACADEMY_ERR_HTTP
	StatusProtocol          Status = C.ACADEMY_ERR_PROTOCOL
	StatusClosed            Status = C.ACADEMY_ERR_CLOSED
	StatusRemote            Status = C.ACADEMY_ERR_REMOTE
	StatusInternal          Status = C.ACADEMY_ERR_INTERNAL
)

func (s Status) String() string {
	return C.GoString(C.academy_status_str(C.int(s)))
}

// Error is a failed call: its status and libacademy's detail text.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("academy: %s: %s", e.Status, e.Message) }

// Is matches errors by status, so errors.Is(err, academy.ErrTimeout) works.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Message == "" && t.Status == e.Status
}

// Sentinels for errors.Is.
var (
	ErrInvalidArgument   = &Error{Status: StatusInvalidArgument}
	ErrTimeout           = &Error{Status: StatusTimeout}
	ErrBadEntityID       = &Error{Status: StatusBadEntityID}
	ErrMailboxTerminated = &Error{Status: StatusMailboxTerminated}
	ErrForbidden         = &Error{Status: StatusForbidden}
	ErrConnection        = &Error{Status: StatusConnection}
	ErrClosed            = &Error{Status: StatusClosed}
	ErrRemote            = &Error{Status: StatusRemote}
)

// call runs one C call and reads its error on the same OS thread
// (academy_last_error is thread-local).
func call(f func() C.enum_academy_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := f()
	if s == C.ACADEMY_OK {
		return nil
	}
	return &Error{Status: Status(s), Message: C.GoString(C.academy_last_error())}
}

type cstrings []*C.char

func (c *cstrings) add(s string) *C.char {
	p := C.CString(s)
	*c = append(*c, p)
	return p
}

func (c cstrings) free() {
	for _, p := range c {
		C.free(unsafe.Pointer(p))
	}
}

func takeString(p *C.char) string {
	s := C.GoString(p)
	C.academy_string_free(p)
	return s
}

func seconds(d time.Duration) C.double {
	if d < 0 {
		return -1
	}
	return C.double(d.Seconds())
}

// Version is the version of libacademy.
func Version() string { return C.GoString(C.academy_version()) }

// Options of a factory; zero values mean the library's defaults. The
// README's "Factory options" table says what each does.
type Options struct {
	// AuthMethod: "" or "globus".
	AuthMethod          string            `json:"auth_method,omitempty"`
	GlobusTokenURL      string            `json:"globus_token_url,omitempty"`
	AdditionalHeaders   map[string]string `json:"additional_headers,omitempty"`
	SSLVerify           *bool             `json:"ssl_verify,omitempty"`
	CAFile              string            `json:"ca_file,omitempty"`
	RequestTimeout      float64           `json:"request_timeout_s,omitempty"`
	ConnectTimeout      float64           `json:"connect_timeout_s,omitempty"`
	Retries             *int              `json:"retries,omitempty"`
	HeartbeatInterval   float64           `json:"heartbeat_interval_s,omitempty"`
	MaxConcurrency      int               `json:"max_concurrency,omitempty"`
	InitialRetryBackoff float64           `json:"initial_retry_backoff_s,omitempty"`
	// BusyPollMicros: how long a goroutine's thread blocked on a call to
	// an agent polls before sleeping (nil: 200; 0: never).
	BusyPollMicros *int `json:"busy_poll_us,omitempty"`
	// MaxInFlight: how many SendAsync sends of a client may be pending
	// at once (0: 64).
	MaxInFlight int `json:"max_in_flight,omitempty"`
	// ResendUnacknowledged: send again a message whose request was
	// written but never answered, to any exchange (false: only to one
	// that drops repeated messages, as libacademy's does).
	ResendUnacknowledged bool `json:"resend_unacknowledged,omitempty"`
	// AllowedDeserializers: the serializations a served agent reads
	// requests in, of "json" and "pickle" (nil: both).
	AllowedDeserializers []string `json:"allowed_deserializers,omitempty"`
	// RequestSerialization: how calls write action arguments: "auto"
	// (JSON unless they hold a py/ form, then pickle), "json" or
	// "pickle" ("": auto).
	RequestSerialization string `json:"request_serialization,omitempty"`
}

// Factory makes clients of one exchange.
type Factory struct{ ptr *C.struct_academy_factory }

// NewFactory makes a factory for the exchange at url; opts may be nil.
func NewFactory(url string, opts *Options) (*Factory, error) {
	var cs cstrings
	defer cs.free()
	var options *C.char
	if opts != nil {
		text, err := json.Marshal(opts)
		if err != nil {
			return nil, err
		}
		options = cs.add(string(text))
	}
	f := &Factory{}
	if err := call(func() C.enum_academy_status {
		return C.academy_http_factory_new(cs.add(url), options, &f.ptr)
	}); err != nil {
		return nil, err
	}
	return f, nil
}

// Close frees the factory (clients made from it stay valid).
func (f *Factory) Close() {
	C.academy_factory_free(f.ptr)
	f.ptr = nil
}

// Client is bound to one mailbox.
type Client struct {
	ptr *C.struct_academy_client

	qmu      sync.Mutex
	queue    *Queue // of the _async calls (SetQueue, or made at the first)
	ownQueue bool   // made by the client, closed by Close
	closed   bool   // by Close
}

// NewUserClient registers a new user mailbox and returns its client.
func (f *Factory) NewUserClient(name string) (*Client, error) {
	var cs cstrings
	defer cs.free()
	c := &Client{}
	var n *C.char
	if name != "" {
		n = cs.add(name)
	}
	if err := call(func() C.enum_academy_status { return C.academy_user_client_new(f.ptr, n, &c.ptr) }); err != nil {
		return nil, err
	}
	return c, nil
}

// NewAgentClient makes the client of a registered agent.
func (f *Factory) NewAgentClient(registration string) (*Client, error) {
	var cs cstrings
	defer cs.free()
	c := &Client{}
	reg := cs.add(registration)
	if err := call(func() C.enum_academy_status { return C.academy_agent_client_new(f.ptr, reg, &c.ptr) }); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) outString(f func(out **C.char) C.enum_academy_status) (string, error) {
	var out *C.char
	if err := call(func() C.enum_academy_status { return f(&out) }); err != nil {
		return "", err
	}
	return takeString(out), nil
}

// MailboxID is the JSON id of the client's mailbox.
func (c *Client) MailboxID() (string, error) {
	return c.outString(func(o **C.char) C.enum_academy_status { return C.academy_client_mailbox_id(c.ptr, o) })
}

// RegisterAgent registers a new agent mailbox (agentTypes: the class MRO,
// comma-joined, most derived first) and returns its registration JSON.
func (c *Client) RegisterAgent(agentTypes, name string) (string, error) {
	var cs cstrings
	defer cs.free()
	t := cs.add(agentTypes)
	var n *C.char
	if name != "" {
		n = cs.add(name)
	}
	return c.outString(func(o **C.char) C.enum_academy_status { return C.academy_client_register_agent(c.ptr, t, n, o) })
}

// Send sends a message (its JSON).
func (c *Client) Send(message string) error {
	var cs cstrings
	defer cs.free()
	m := cs.add(message)
	return call(func() C.enum_academy_status { return C.academy_client_send(c.ptr, m) })
}

// SendAsync starts sending a message (its JSON) and returns without
// waiting for the exchange, once one of the client's MaxInFlight slots is
// free. done (may be nil) gets the outcome once, on a library thread; it
// must not block. Flush waits for the sends and reports their failures.
func (c *Client) SendAsync(message string, done func(error)) error {
	var cs cstrings
	defer cs.free()
	m := cs.add(message)
	h := cgo.NewHandle(done)
	err := call(func() C.enum_academy_status { return C.send_async_go(c.ptr, m, C.uintptr_t(h)) })
	if err != nil {
		h.Delete() // not started: the callback never comes
	}
	return err
}

//export goSendDone
func goSendDone(userData unsafe.Pointer, status C.enum_academy_status, text *C.char) {
	h := cgo.Handle(uintptr(userData))
	done := h.Value().(func(error))
	h.Delete()
	if done == nil {
		return
	}
	if status == C.ACADEMY_OK {
		done(nil)
	} else {
		done(&Error{Status: Status(status), Message: C.GoString(text)})
	}
}

// Flush waits up to timeout (negative: forever) for the SendAsync sends
// started before it; returns the first failure since the last Flush.
func (c *Client) Flush(timeout time.Duration) error {
	return call(func() C.enum_academy_status { return C.academy_client_flush(c.ptr, seconds(timeout)) })
}

// Recv waits up to timeout (negative: forever) for the next message.
func (c *Client) Recv(timeout time.Duration) (string, error) {
	return c.outString(func(o **C.char) C.enum_academy_status { return C.academy_client_recv(c.ptr, seconds(timeout), o) })
}

// MailboxStatus of a mailbox.
type MailboxStatus int

// Mailbox statuses.
const (
	Missing    MailboxStatus = 0
	Active     MailboxStatus = 1
	Inactive   MailboxStatus = 2
	Terminated MailboxStatus = 3
)

// Status of the mailbox id (JSON).
func (c *Client) Status(id string) (MailboxStatus, error) {
	var cs cstrings
	defer cs.free()
	i := cs.add(id)
	var out C.enum_academy_mailbox_status
	err := call(func() C.enum_academy_status { return C.academy_client_status(c.ptr, i, &out) })
	return MailboxStatus(out), err
}

// Terminate the mailbox id (JSON).
func (c *Client) Terminate(id string) error {
	var cs cstrings
	defer cs.free()
	i := cs.add(id)
	return call(func() C.enum_academy_status { return C.academy_client_terminate(c.ptr, i) })
}

// Discover agents of a class; returns their JSON ids.
func (c *Client) Discover(agentType string, allowSubclasses bool) ([]json.RawMessage, error) {
	var cs cstrings
	defer cs.free()
	t := cs.add(agentType)
	text, err := c.outString(func(o **C.char) C.enum_academy_status {
		return C.academy_client_discover(c.ptr, t, C.bool(allowSubclasses), o)
	})
	if err != nil {
		return nil, err
	}
	var ids []json.RawMessage
	return ids, json.Unmarshal([]byte(text), &ids)
}

// marshalArgs gives the JSON of an action's arguments (nil: none).
func marshalArgs(args []any, kwargs map[string]any) (string, string, error) {
	if args == nil {
		args = []any{}
	}
	if kwargs == nil {
		kwargs = map[string]any{}
	}
	a, err := json.Marshal(args)
	if err != nil {
		return "", "", err
	}
	k, err := json.Marshal(kwargs)
	if err != nil {
		return "", "", err
	}
	return string(a), string(k), nil
}

// Action calls an action of an agent with JSON serialization; it blocks
// the goroutine and its OS thread (see ActionAsync for many calls at once).
func (c *Client) Action(agentID, action string, args []any, kwargs map[string]any, timeout time.Duration) (json.RawMessage, error) {
	a, k, err := marshalArgs(args, kwargs)
	if err != nil {
		return nil, err
	}
	var cs cstrings
	defer cs.free()
	id, act, ap, kp := cs.add(agentID), cs.add(action), cs.add(a), cs.add(k)
	text, err := c.outString(func(o **C.char) C.enum_academy_status {
		return C.academy_client_action(c.ptr, id, act, ap, kp, seconds(timeout), o)
	})
	return json.RawMessage(text), err
}

// Ping an agent; returns the round-trip time.
func (c *Client) Ping(agentID string, timeout time.Duration) (time.Duration, error) {
	var cs cstrings
	defer cs.free()
	id := cs.add(agentID)
	var rtt C.double
	err := call(func() C.enum_academy_status { return C.academy_client_ping(c.ptr, id, seconds(timeout), &rtt) })
	return time.Duration(float64(rtt) * float64(time.Second)), err
}

// ShutdownAgent asks an agent to shut down (terminate: -1 default, 0, 1).
func (c *Client) ShutdownAgent(agentID string, terminate int) error {
	var cs cstrings
	defer cs.free()
	id := cs.add(agentID)
	return call(func() C.enum_academy_status { return C.academy_client_shutdown_agent(c.ptr, id, C.int(terminate)) })
}

// Handler serves one action: it returns the result (any JSON-marshalable
// value) or an error, which the caller sees as a remote exception.
type Handler func(action string, args, kwargs json.RawMessage) (any, error)

// servedBy is what Serve and ServeContext hand the library's threads.
type servedBy struct {
	handler ContextHandler
	watch   bool // the handler uses its ctx: check for cancellation
}

//export goActionHandler
func goActionHandler(userData unsafe.Pointer, action, args, kwargs *C.char, reply *C.struct_academy_reply) {
	served := cgo.Handle(uintptr(userData)).Value().(servedBy)
	ctx, unwatch := handlerContext(context.Background(), reply, served.watch)
	result, err := callHandler(ctx, served.handler, C.GoString(action),
		json.RawMessage(C.GoString(args)), json.RawMessage(C.GoString(kwargs)))
	unwatch() // before the reply is completed, which frees it
	complete(reply, result, err)
}

// Serve serves the agent of this client until it is shut down or Stop is
// called; handlers run on library threads, up to the factory's
// MaxConcurrency at once. A handler that panics answers its caller with
// the panic as the error.
func (c *Client) Serve(handler Handler) error {
	plain := func(_ context.Context, action string, args, kwargs json.RawMessage) (any, error) {
		return handler(action, args, kwargs)
	}
	return c.serve(servedBy{handler: plain})
}

// ServeContext is Serve for a handler that stops early when its request
// is answered without it: each handler's ctx ends when its caller
// cancelled the request, serving ended (Stop, Close, a terminated
// mailbox), checked every 50 ms (academy_reply_cancelled).
func (c *Client) ServeContext(handler ContextHandler) error {
	return c.serve(servedBy{handler: handler, watch: true})
}

func (c *Client) serve(served servedBy) error {
	h := cgo.NewHandle(served)
	defer h.Delete()
	return call(func() C.enum_academy_status { return C.serve_go(c.ptr, C.uintptr_t(h)) })
}

// Stop ends Serve or ServeQueue from another goroutine.
func (c *Client) Stop() error {
	return call(func() C.enum_academy_status { return C.academy_agent_stop(c.ptr) })
}

// Close stops the client (a user client terminates its mailbox) and frees
// it. Its _async calls still in flight return an error with StatusClosed;
// the queue it made for them is closed (a queue given to SetQueue is not).
func (c *Client) Close() error {
	err := call(func() C.enum_academy_status { return C.academy_client_close(c.ptr) })
	c.closeOwnQueue()
	C.academy_client_free(c.ptr)
	c.ptr = nil
	return err
}

// Exchange is an exchange server running in this process.
type Exchange struct{ ptr *C.struct_academy_exchange }

// SpawnExchange starts the embedded exchange (options: nil or JSON text
// such as `{"port": 0}`).
func SpawnExchange(options string) (*Exchange, error) {
	var cs cstrings
	defer cs.free()
	var o *C.char
	if options != "" {
		o = cs.add(options)
	}
	e := &Exchange{}
	if err := call(func() C.enum_academy_status { return C.academy_exchange_spawn(o, &e.ptr) }); err != nil {
		return nil, err
	}
	return e, nil
}

// URL clients use to reach the exchange.
func (e *Exchange) URL() (string, error) {
	var out *C.char
	if err := call(func() C.enum_academy_status { return C.academy_exchange_url(e.ptr, &out) }); err != nil {
		return "", err
	}
	return takeString(out), nil
}

// Close stops and frees the exchange.
func (e *Exchange) Close() error {
	err := call(func() C.enum_academy_status { return C.academy_exchange_stop(e.ptr) })
	C.academy_exchange_free(e.ptr)
	e.ptr = nil
	return err
}
