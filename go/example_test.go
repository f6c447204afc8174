package academy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"strings"
	"time"

	academy "github.com/academy-agents/libacademy/go"
)

// A Go agent and a Go user on an exchange running in this process: the
// user calls the agent's "add" action, sees a failing action as an error,
// and asks the agent to shut down.
func Example() {
	exchange, err := academy.SpawnExchange(`{"port": 0}`)
	if err != nil {
		log.Fatal(err)
	}
	defer exchange.Close()
	url, err := exchange.URL()
	if err != nil {
		log.Fatal(err)
	}
	factory, err := academy.NewFactory(url, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer factory.Close()
	user, err := factory.NewUserClient("example-user")
	if err != nil {
		log.Fatal(err)
	}
	defer user.Close()

	// Register an agent and serve it from a goroutine.
	registration, err := user.RegisterAgent("examples.Adder", "adder")
	if err != nil {
		log.Fatal(err)
	}
	agent, err := factory.NewAgentClient(registration)
	if err != nil {
		log.Fatal(err)
	}
	defer agent.Close()
	served := make(chan error)
	go func() {
		served <- agent.Serve(func(action string, args, kwargs json.RawMessage) (any, error) {
			var xs []float64
			if action != "add" || json.Unmarshal(args, &xs) != nil || len(xs) != 2 {
				return nil, fmt.Errorf("cannot %s %s", action, args)
			}
			return xs[0] + xs[1], nil
		})
	}()

	agentID, err := agent.MailboxID()
	if err != nil {
		log.Fatal(err)
	}
	sum, err := user.Action(agentID, "add", []any{2, 3}, nil, 10*time.Second)
	fmt.Println("add:", string(sum), err)
	_, err = user.Action(agentID, "divide", []any{1, 0}, nil, 10*time.Second)
	fmt.Println("divide is a remote error:", errors.Is(err, academy.ErrRemote))
	fmt.Println("its message:", strings.Contains(err.Error(), "cannot divide [1,0]"))
	if err := user.ShutdownAgent(agentID, -1); err != nil {
		log.Fatal(err)
	}
	fmt.Println("serving ended:", <-served)
	// Output:
	// add: 5 <nil>
	// divide is a remote error: true
	// its message: true
	// serving ended: <nil>
}

// Many messages in flight from one goroutine: SendAsync returns at once,
// and Flush waits until every send has ended.
func ExampleClient_SendAsync() {
	exchange, err := academy.SpawnExchange(`{"port": 0}`)
	if err != nil {
		log.Fatal(err)
	}
	defer exchange.Close()
	url, _ := exchange.URL()
	factory, err := academy.NewFactory(url, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer factory.Close()
	user, err := factory.NewUserClient("sender")
	if err != nil {
		log.Fatal(err)
	}
	defer user.Close()
	registration, _ := user.RegisterAgent("examples.Sink", "sink")
	sink, err := factory.NewAgentClient(registration)
	if err != nil {
		log.Fatal(err)
	}
	defer sink.Close()
	me, _ := user.MailboxID()
	dest, _ := sink.MailboxID()

	const n = 100
	for i := 0; i < n; i++ {
		msg := fmt.Sprintf(`{"header": {"src": %s, "dest": %s, "tag": "00000000-0000-4000-8000-%012d", "kind": "request"}, "body": {"kind": "ping-request"}}`, me, dest, i)
		if err := user.SendAsync(msg, nil); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("flush:", user.Flush(-1))
	received := 0
	for ; received < n; received++ {
		if _, err := sink.Recv(10 * time.Second); err != nil {
			break
		}
	}
	fmt.Println("received:", received)
	// Output:
	// flush: <nil>
	// received: 100
}

// Errors carry the status of the C call and libacademy's text.
func ExampleNewFactory_badURL() {
	_, err := academy.NewFactory("ftp://nowhere", nil)
	var e *academy.Error
	fmt.Println(errors.As(err, &e), e.Status == academy.StatusInvalidArgument)
	fmt.Println(errors.Is(err, academy.ErrInvalidArgument))
	// Output:
	// true true
	// true
}
