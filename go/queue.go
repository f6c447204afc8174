package academy

/*
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include "academy.h"

// The queue's fd belongs to the queue; Go's os.File closes what it is
// given, so it gets a duplicate (close-on-exec, like the original).
static int dup_cloexec(int fd) { return fcntl(fd, F_DUPFD_CLOEXEC, 0); }
*/
import "C"

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Queue is a completion queue (academy_queue): the _async calls
// (ActionAsync, PingAsync, RequestAsync) and ServeQueue post their
// events to it. One goroutine per Queue waits for its fd on Go's runtime
// poller (the netpoller, as for sockets), takes the events with
// academy_queue_poll(queue, 0, ...) and hands each to the goroutine that
// waits for it; so a call in flight holds a parked goroutine, never an OS
// thread. A Queue may be shared by many clients (see Client.SetQueue).
type Queue struct {
	// life is read-held around every C call that uses ptr, and held by
	// Close while it frees the queue, so no call sees a freed queue.
	life       sync.RWMutex
	ptr        *C.struct_academy_queue
	file       *os.File // a dup of the queue's fd, registered with the netpoller
	closing    atomic.Bool
	driverDone chan struct{}

	mu       sync.Mutex // guards what follows
	next     uint64     // the next token
	calls    map[uint64]chan callResult
	servings map[uint64]*serving
}

// callResult is what a CALL event says, copied out of the C event.
type callResult struct {
	json string
	rtt  time.Duration
	err  error
}

// cSlots bounds how many goroutines are inside the short C calls of the
// queue machinery (starting an _async call or a serving, replying to a
// queued request) at once. Those calls do not block, but thousands of
// goroutines making them together contend inside the library, and each
// cgo call that takes more than ~20µs lets the Go runtime start another
// OS thread to run the other goroutines: without this bound 10,000
// concurrent ActionAsync calls grew the process to 60-80 threads on a
// busy 2-CPU machine. Goroutines waiting for a slot are parked, not
// threads; more slots than CPUs would not make the calls faster.
var cSlots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))

// inC runs one short C call of the queue machinery in a slot.
func inC[T any](f func() T) T {
	cSlots <- struct{}{}
	defer func() { <-cSlots }()
	return f()
}

// errQueueClosed fails what waits on a queue when Queue.Close frees it.
var errQueueClosed = &Error{Status: StatusClosed, Message: "the queue was closed"}

// NewQueue makes a queue and starts the goroutine that drives it. Close
// it when done.
func NewQueue() (*Queue, error) {
	q := &Queue{
		driverDone: make(chan struct{}),
		next:       1,
		calls:      map[uint64]chan callResult{},
		servings:   map[uint64]*serving{},
	}
	if err := call(func() C.enum_academy_status { return C.academy_queue_new(&q.ptr) }); err != nil {
		return nil, err
	}
	raw, err := q.watchFd()
	if err != nil {
		C.academy_queue_free(q.ptr)
		return nil, err
	}
	go q.drive(raw)
	return q, nil
}

// watchFd registers a duplicate of the queue's fd (an eventfd, already
// non-blocking) with Go's runtime poller.
func (q *Queue) watchFd() (syscall.RawConn, error) {
	var fd C.int
	if err := call(func() C.enum_academy_status { return C.academy_queue_fd(q.ptr, &fd) }); err != nil {
		return nil, err
	}
	dup, errno := C.dup_cloexec(fd)
	if dup < 0 {
		return nil, fmt.Errorf("academy: duplicating the queue's fd: %w", errno)
	}
	q.file = os.NewFile(uintptr(dup), "academy-queue")
	raw, err := q.file.SyscallConn()
	if err != nil {
		q.file.Close()
		return nil, err
	}
	return raw, nil
}

// drive takes and dispatches the queue's events until Close. RawConn.Read
// calls the function, and while it returns false, parks this goroutine
// on the netpoller until the fd is readable again and calls it again;
// the fd is readable exactly while events wait, and the poller is
// edge-triggered, so draining until the queue is empty before each wait
// loses no wake-up. Read returns once Close closes the file.
func (q *Queue) drive(raw syscall.RawConn) {
	defer close(q.driverDone)
	raw.Read(func(uintptr) bool {
		q.drain()
		return false
	})
	// Not expected on Linux, where eventfds poll: if the runtime poller
	// refused the fd, wait in academy_queue_poll instead (this parks one
	// OS thread for the queue, still not one per call).
	for !q.closing.Load() {
		q.take(0.1)
	}
}

// drain takes every waiting event without blocking.
func (q *Queue) drain() {
	for q.take(0) {
	}
}

// take takes and dispatches one event, waiting up to timeout seconds;
// false when there was none.
func (q *Queue) take(timeout float64) bool {
	var ev *C.struct_academy_event
	if C.academy_queue_poll(q.ptr, C.double(timeout), &ev) != C.ACADEMY_OK {
		return false
	}
	q.dispatch(ev)
	C.academy_event_free(ev)
	return true
}

// dispatch hands an event to whoever waits for its token. It never
// blocks: call results go to a channel with room for one, requests to a
// new goroutine each.
func (q *Queue) dispatch(ev *C.struct_academy_event) {
	token := uint64(ev.token)
	switch ev.kind {
	case C.ACADEMY_EVENT_CALL:
		q.mu.Lock()
		ch, ok := q.calls[token]
		delete(q.calls, token)
		q.mu.Unlock()
		if ok { // else the caller gave up (its context ended): drop it
			ch <- callResultOf(ev)
		}
	case C.ACADEMY_EVENT_REQUEST:
		q.mu.Lock()
		s := q.servings[token]
		q.mu.Unlock()
		req := request{
			action: C.GoString(ev.action),
			args:   json.RawMessage(C.GoString(ev.args_json)),
			kwargs: json.RawMessage(C.GoString(ev.kwargs_json)),
			reply:  ev.reply,
		}
		if s == nil { // cannot happen: serving ends with ENDED, after its requests
			complete(req.reply, nil, fmt.Errorf("no Go serving for this request"))
			return
		}
		s.handle(req)
	case C.ACADEMY_EVENT_ENDED:
		q.mu.Lock()
		s := q.servings[token]
		delete(q.servings, token)
		q.mu.Unlock()
		if s != nil {
			s.ended <- statusError(ev.status, ev.error)
		}
	}
	// MESSAGE events (academy_client_listen) have no Go API yet.
}

func callResultOf(ev *C.struct_academy_event) callResult {
	if err := statusError(ev.status, ev.error); err != nil {
		return callResult{err: err}
	}
	r := callResult{rtt: time.Duration(float64(ev.rtt_s) * float64(time.Second))}
	if ev.json != nil {
		r.json = C.GoString(ev.json)
	}
	return r
}

func statusError(status C.enum_academy_status, text *C.char) error {
	if status == C.ACADEMY_OK {
		return nil
	}
	return &Error{Status: Status(status), Message: C.GoString(text)}
}

// start registers a waiter under a new token and starts the C side with
// that token; the waiter is registered first, since the event may come
// before start returns. When start fails no event will come, and the
// waiter is removed again.
func (q *Queue) start(register func(token uint64), unregister func(token uint64),
	startC func(ptr *C.struct_academy_queue, token C.uint64_t) C.enum_academy_status) (uint64, error) {
	q.life.RLock()
	defer q.life.RUnlock()
	if q.ptr == nil {
		return 0, errQueueClosed
	}
	q.mu.Lock()
	token := q.next
	q.next++
	register(token)
	q.mu.Unlock()
	if err := inC(func() error {
		return call(func() C.enum_academy_status { return startC(q.ptr, C.uint64_t(token)) })
	}); err != nil {
		q.mu.Lock()
		unregister(token)
		q.mu.Unlock()
		return 0, err
	}
	return token, nil
}

// startCall starts an _async call whose CALL event goes to the returned
// channel.
func (q *Queue) startCall(startC func(ptr *C.struct_academy_queue, token C.uint64_t) C.enum_academy_status) (uint64, chan callResult, error) {
	ch := make(chan callResult, 1)
	token, err := q.start(
		func(t uint64) { q.calls[t] = ch },
		func(t uint64) { delete(q.calls, t) },
		startC)
	return token, ch, err
}

// forget drops the waiter of a call whose caller gave up; its event, when
// it comes, is freed unseen.
func (q *Queue) forget(token uint64) {
	q.mu.Lock()
	delete(q.calls, token)
	q.mu.Unlock()
}

// waiting is how many calls and servings wait for events.
func (q *Queue) waiting() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.calls) + len(q.servings)
}

// Close stops the queue's goroutine and frees the queue. Calls still
// waiting on it return an error with StatusClosed, ServeQueue on it
// stops serving and returns that error, and later calls that would use
// it fail with it. What the library still had for the queue is dropped
// (see academy_queue_free: action requests among it are answered with
// ActionCancelledError). Closing twice is a no-op.
func (q *Queue) Close() {
	q.life.Lock()
	defer q.life.Unlock()
	if q.ptr == nil {
		return
	}
	q.closing.Store(true)
	q.file.Close() // wakes the driver's Read with an error
	<-q.driverDone
	C.academy_queue_free(q.ptr)
	q.ptr = nil
	q.mu.Lock()
	calls, servings := q.calls, q.servings
	q.calls, q.servings = map[uint64]chan callResult{}, map[uint64]*serving{}
	q.mu.Unlock()
	for _, ch := range calls {
		ch <- callResult{err: errQueueClosed}
	}
	for _, s := range servings {
		s.ended <- errQueueClosed
	}
}

// SetQueue makes the client's _async calls use q (shared with other
// clients, closed by its owner). Without it, the first _async call makes
// a queue of the client's own, closed by Client.Close. Call it before the
// first _async call.
func (c *Client) SetQueue(q *Queue) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	c.queue, c.ownQueue = q, false
}

func (c *Client) asyncQueue() (*Queue, error) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.closed {
		return nil, &Error{Status: StatusClosed, Message: "the client was closed"}
	}
	if c.queue == nil {
		q, err := NewQueue()
		if err != nil {
			return nil, err
		}
		c.queue, c.ownQueue = q, true
	}
	return c.queue, nil
}

// closeOwnQueue closes the queue the client made for itself, if any;
// later _async calls on the client fail with StatusClosed.
func (c *Client) closeOwnQueue() {
	c.qmu.Lock()
	q, own := c.queue, c.ownQueue
	c.queue, c.ownQueue, c.closed = nil, false, true
	c.qmu.Unlock()
	if own {
		q.Close()
	}
}

// asyncTimeout is the library's deadline for a call under ctx: a second
// after ctx's own, so that ctx ends the wait first (and the caller sees
// ctx.Err()) while the library still frees the call's entry; none (-1)
// when ctx has no deadline.
func asyncTimeout(ctx context.Context) C.double {
	deadline, ok := ctx.Deadline()
	if !ok {
		return -1
	}
	return C.double(max(time.Until(deadline)+time.Second, 0).Seconds())
}

// await starts one _async call (startC gets the queue, token and
// timeout) and parks the goroutine until its event comes or ctx ends.
func (c *Client) await(ctx context.Context, startC func(q *C.struct_academy_queue, token C.uint64_t, timeout C.double) C.enum_academy_status) (callResult, error) {
	if err := ctx.Err(); err != nil {
		return callResult{}, err
	}
	q, err := c.asyncQueue()
	if err != nil {
		return callResult{}, err
	}
	timeout := asyncTimeout(ctx)
	token, ch, err := q.startCall(func(ptr *C.struct_academy_queue, tok C.uint64_t) C.enum_academy_status {
		return startC(ptr, tok, timeout)
	})
	if err != nil {
		return callResult{}, err
	}
	select {
	case r := <-ch:
		return r, r.err
	case <-ctx.Done():
		q.forget(token)
		return callResult{}, ctx.Err()
	}
}

// ActionAsync calls an action of an agent (JSON serialization) as Action
// does, through a completion queue: the call goes out at once and the
// goroutine is parked, holding no OS thread, until the result event
// comes; thousands of goroutines may each have one in flight. It returns
// the result JSON, or the error (errors.Is(err, ErrRemote) when the action
// raised).
//
// ctx bounds the call: when ctx ends first, ActionAsync returns ctx.Err()
// at once. The request cannot be recalled: the agent may still run the
// action, and its late answer is dropped when it comes (freed unseen,
// never given to another call). The library keeps a few hundred bytes for
// such a call until the answer comes, ctx's deadline plus a second passes,
// or the client closes; give ctx a deadline when agents may never answer.
func (c *Client) ActionAsync(ctx context.Context, agentID, action string, args []any, kwargs map[string]any) (json.RawMessage, error) {
	a, k, err := marshalArgs(args, kwargs)
	if err != nil {
		return nil, err
	}
	r, err := c.await(ctx, func(q *C.struct_academy_queue, token C.uint64_t, timeout C.double) C.enum_academy_status {
		var cs cstrings
		defer cs.free()
		return C.academy_client_action_async(c.ptr, cs.add(agentID), cs.add(action), cs.add(a), cs.add(k), timeout, q, token)
	})
	if err != nil {
		return nil, err
	}
	return json.RawMessage(r.json), nil
}

// PingAsync pings an agent through a completion queue (see ActionAsync
// for ctx) and returns the round-trip time.
func (c *Client) PingAsync(ctx context.Context, agentID string) (time.Duration, error) {
	r, err := c.await(ctx, func(q *C.struct_academy_queue, token C.uint64_t, timeout C.double) C.enum_academy_status {
		var cs cstrings
		defer cs.free()
		return C.academy_client_ping_async(c.ptr, cs.add(agentID), timeout, q, token)
	})
	return r.rtt, err
}

// RequestAsync sends a request (body: a request body's JSON) to dest (a
// JSON id) through a completion queue (see ActionAsync for ctx) and
// returns the whole response message JSON, not interpreted.
func (c *Client) RequestAsync(ctx context.Context, dest, body string) (string, error) {
	r, err := c.await(ctx, func(q *C.struct_academy_queue, token C.uint64_t, timeout C.double) C.enum_academy_status {
		var cs cstrings
		defer cs.free()
		return C.academy_client_request_async(c.ptr, cs.add(dest), cs.add(body), timeout, q, token)
	})
	return r.json, err
}

// request is a REQUEST event, copied out of the C event; reply stays the
// program's until completed.
type request struct {
	action       string
	args, kwargs json.RawMessage
	reply        *C.struct_academy_reply
}

// ContextHandler serves one action as a Handler does, and is told when to
// give up: ctx is done once the request was answered without it (its
// caller cancelled it, serving ended, or the mailbox was terminated), as
// academy-py cancels a running action then, or when the ctx given to
// ServeQueueContext ends. What the handler returns after that is dropped.
type ContextHandler func(ctx context.Context, action string, args, kwargs json.RawMessage) (any, error)

// cancelCheck is how often a ContextHandler's request is checked for
// having been answered without it (academy_reply_cancelled): the library
// has no event for it, and a check is one short C call.
const cancelCheck = 50 * time.Millisecond

// serving is one ServeQueue in progress.
type serving struct {
	ctx     context.Context // ServeQueue's
	handler ContextHandler
	watch   bool           // the handler uses its ctx: check for cancellation
	running sync.WaitGroup // handlers still running
	ended   chan error     // room for one: the ENDED event or Close
}

// handle runs the handler for one request in a goroutine of its own.
func (s *serving) handle(req request) {
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		ctx, unwatch := handlerContext(s.ctx, req.reply, s.watch)
		result, err := s.call(ctx, req)
		unwatch() // before the reply is completed, which frees it
		inC(func() struct{} { complete(req.reply, result, err); return struct{}{} })
	}()
}

// handlerContext is the ctx a handler gets: with watch, one that ends
// when reply's request is answered without it (checked every
// cancelCheck) or parent ends; without, parent's child, which no check
// ends. unwatch stops the check, waits for it and ends the context: call
// it before the reply is completed, which frees it.
func handlerContext(parent context.Context, reply *C.struct_academy_reply, watch bool) (ctx context.Context, unwatch func()) {
	ctx, cancel := context.WithCancel(parent)
	if !watch {
		return ctx, cancel
	}
	returned, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		tick := time.NewTicker(cancelCheck)
		defer tick.Stop()
		for {
			select {
			case <-returned:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				if replyCancelled(reply) {
					cancel()
					return
				}
			}
		}
	}()
	return ctx, func() {
		close(returned)
		<-watched
		cancel()
	}
}

// replyCancelled asks whether a reply's request was answered without it.
// The reply is live: it is completed only after its watch ended.
func replyCancelled(reply *C.struct_academy_reply) bool {
	var answered C.bool
	status := inC(func() C.enum_academy_status { return C.academy_reply_cancelled(reply, &answered) })
	return status != C.ACADEMY_OK || bool(answered)
}

func (s *serving) call(ctx context.Context, req request) (result any, err error) {
	return callHandler(ctx, s.handler, req.action, req.args, req.kwargs)
}

// callHandler runs a handler; a panic becomes the error the caller sees,
// as net/http keeps a panicking handler from taking the server down.
func callHandler(ctx context.Context, handler ContextHandler, action string, args, kwargs json.RawMessage) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in the Go handler of %s: %v", action, p)
		}
	}()
	return handler(ctx, action, args, kwargs)
}

// complete answers a request with the handler's result or error.
func complete(reply *C.struct_academy_reply, result any, err error) {
	var text []byte
	if err == nil {
		text, err = json.Marshal(result)
	}
	var cs cstrings
	defer cs.free()
	if err != nil {
		// academy_reply_error refuses invalid UTF-8 (and would keep the
		// reply unanswered), so make it valid first.
		C.academy_reply_error(reply, cs.add(strings.ToValidUTF8(err.Error(), "\uFFFD")))
		return
	}
	C.academy_reply_ok(reply, cs.add(string(text)))
}

// ServeQueue serves the agent of this client through q
// (academy_agent_serve_queue) until it is shut down, ctx ends, Stop is
// called or q is closed: the library answers pings, shutdown and cancel
// requests, and each action request runs handler in a goroutine of its
// own (no limit: MaxConcurrency does not apply), whose result or error
// is sent back without blocking. No OS thread waits per request.
//
// It returns nil after a shutdown request or Stop, ctx.Err() when ctx
// ended it, and otherwise the reason serving ended (StatusClosed after
// Client.Close or Queue.Close, StatusMailboxTerminated when someone else
// terminated the mailbox). It returns after the handlers that were
// running have returned; requests still unanswered when serving ended
// get ActionCancelledError.
func (c *Client) ServeQueue(ctx context.Context, q *Queue, handler Handler) error {
	plain := func(_ context.Context, action string, args, kwargs json.RawMessage) (any, error) {
		return handler(action, args, kwargs)
	}
	return c.serveQueue(ctx, q, plain, false)
}

// ServeQueueContext is ServeQueue for a handler that stops early when its
// request is answered without it: each handler's ctx ends when its caller
// cancelled the request, serving ended (Stop, Close, a terminated
// mailbox) or ctx ended. A goroutine per running handler checks for that
// every 50 ms (academy_reply_cancelled).
func (c *Client) ServeQueueContext(ctx context.Context, q *Queue, handler ContextHandler) error {
	return c.serveQueue(ctx, q, handler, true)
}

func (c *Client) serveQueue(ctx context.Context, q *Queue, handler ContextHandler, watch bool) error {
	s := &serving{ctx: ctx, handler: handler, watch: watch, ended: make(chan error, 1)}
	_, err := q.start(
		func(t uint64) { q.servings[t] = s },
		func(t uint64) { delete(q.servings, t) },
		func(ptr *C.struct_academy_queue, token C.uint64_t) C.enum_academy_status {
			return C.academy_agent_serve_queue(c.ptr, ptr, token)
		})
	if err != nil {
		return err
	}
	var ended error
	select {
	case ended = <-s.ended:
	case <-ctx.Done():
		C.academy_agent_stop(c.ptr) // serving ends with ENDED, OK (or has ended already)
		if ended = <-s.ended; ended == nil {
			ended = ctx.Err()
		}
	}
	if ended == errQueueClosed {
		// The library would go on serving, cancelling every request.
		C.academy_agent_stop(c.ptr)
	}
	s.running.Wait()
	return ended
}
