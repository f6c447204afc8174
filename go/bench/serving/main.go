// Command serving measures the Go binding's two ways of serving an agent
// (bench/run, section "Serving"): Client.Serve (handlers on the library's
// threads, up to MaxConcurrency at once) or Client.ServeQueue (a goroutine
// per request), for an echo handler, with IN_FLIGHT ActionAsync calls kept
// in flight by as many goroutines of one user client.
//
//	serving EXCHANGE N IN_FLIGHT MAX_CONCURRENCY serve|queue
//
// EXCHANGE is an HTTP exchange's URL, or inproc for an exchange started in
// this process (SpawnExchange). Prints one JSON object.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	academy "github.com/academy-agents/libacademy/go"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "serving:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 5 {
		return fmt.Errorf("usage: serving EXCHANGE N IN_FLIGHT MAX_CONCURRENCY serve|queue")
	}
	url := args[0]
	n, err1 := strconv.Atoi(args[1])
	inFlight, err2 := strconv.Atoi(args[2])
	maxConcurrency, err3 := strconv.Atoi(args[3])
	if err1 != nil || err2 != nil || err3 != nil || n < 1 || inFlight < 1 || maxConcurrency < 1 {
		return fmt.Errorf("N, IN_FLIGHT and MAX_CONCURRENCY must be positive integers")
	}
	byThreads := args[4] == "serve"
	if !byThreads && args[4] != "queue" {
		return fmt.Errorf("serve or queue, not %q", args[4])
	}
	if url == "inproc" {
		exchange, err := academy.SpawnExchange(`{"port": 0}`)
		if err != nil {
			return err
		}
		defer exchange.Close()
		if url, err = exchange.URL(); err != nil {
			return err
		}
	}
	factory, err := academy.NewFactory(url, &academy.Options{MaxConcurrency: maxConcurrency})
	if err != nil {
		return err
	}
	user, err := factory.NewUserClient("")
	if err != nil {
		return err
	}
	reg, err := user.RegisterAgent("bench.Echo", "")
	if err != nil {
		return err
	}
	var id struct {
		AgentID json.RawMessage `json:"agent_id"`
	}
	if err := json.Unmarshal([]byte(reg), &id); err != nil {
		return err
	}
	agent, err := factory.NewAgentClient(reg)
	if err != nil {
		return err
	}
	echo := func(_ string, args, _ json.RawMessage) (any, error) { return args, nil }
	served := make(chan error, 1)
	if byThreads {
		go func() { served <- agent.Serve(echo) }()
	} else {
		q, err := academy.NewQueue()
		if err != nil {
			return err
		}
		defer q.Close()
		go func() { served <- agent.ServeQueue(context.Background(), q, echo) }()
	}
	agentID := string(id.AgentID)
	if _, err := keepInFlight(user, agentID, min(n, 500), inFlight); err != nil {
		return err
	}
	start := time.Now()
	ms, err := keepInFlight(user, agentID, n, inFlight)
	if err != nil {
		return err
	}
	seconds := time.Since(start).Seconds()
	if err := agent.Stop(); err != nil {
		return err
	}
	if err := <-served; err != nil {
		return err
	}
	sort.Float64s(ms)
	servedBy := "Client.ServeQueue"
	if byThreads {
		servedBy = "Client.Serve"
	}
	out, _ := json.Marshal(map[string]any{
		"actions_per_s": float64(n) / seconds, "p50_ms": ms[len(ms)/2], "p99_ms": ms[len(ms)*99/100],
		"n": n, "in_flight": inFlight, "max_concurrency": maxConcurrency, "served_by": servedBy,
	})
	fmt.Println(string(out))
	return nil
}

// keepInFlight runs n echo actions, inFlight goroutines each calling
// ActionAsync in turn: the latency of each in ms.
func keepInFlight(user *academy.Client, agentID string, n, inFlight int) ([]float64, error) {
	var (
		mu    sync.Mutex
		ms    = make([]float64, 0, n)
		first error
		wg    sync.WaitGroup
	)
	for g := 0; g < inFlight; g++ {
		count := n / inFlight
		if g < n%inFlight {
			count++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < count; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				t := time.Now()
				_, err := user.ActionAsync(ctx, agentID, "echo", []any{1, 2}, nil)
				cancel()
				mu.Lock()
				ms = append(ms, float64(time.Since(t).Microseconds())/1e3)
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ms, first
}
