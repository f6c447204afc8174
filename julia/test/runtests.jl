# Pkg.test("Academy"): runs against an exchange embedded in this process
# (academy_exchange_spawn) and agents served by this process's tasks.
using Academy
using Academy: ACADEMY_OK, ACADEMY_ERR_TIMEOUT, ACADEMY_ERR_REMOTE, ACADEMY_ERR_CLOSED, ACADEMY_VERSION
using Test

# The agent's actions: JSON in, JSON out (the package depends on no JSON library).
function handler(action, args, kwargs)
    action == "echo" && return args
    action == "add" && return string(sum(parse.(Int, strip.(split(strip(args, ['[', ']', ' ']), ',')))))
    action == "fail" && error("failing on purpose")
    error("no action $action")
end

@testset "Academy" begin
    @testset "version and statuses" begin
        @test Academy.version() == ACADEMY_VERSION
        @test status_str(ACADEMY_ERR_TIMEOUT) == "timeout"
        @test status_name(ACADEMY_ERR_TIMEOUT) == "ACADEMY_ERR_TIMEOUT"
        # Every status constant the header has is the library's code of that name.
        for name in names(Academy; all=true)
            s = string(name)
            (startswith(s, "ACADEMY_ERR_") || s == "ACADEMY_OK") || continue
            @test status_name(getfield(Academy, name)) == s
        end
        @test status_name(12345) == "unknown status"
    end

    @testset "numpy arrays and bytes" begin
        A = [0.0 1.0 2.0; 10.0 11.0 12.0]
        @test read_ndarray(ndarray_json(A)) == A
        @test read_ndarray(Float64, ndarray_json(A)) isa Matrix{Float64}
        # numpy's np.array([[0, 1, 2], [10, 11, 12]], dtype="<f8"): row-major, shape (2, 3).
        numpy = """{"py/ndarray": {"dtype": "<f8", "shape": [2, 3], "order": "C",
                   "data": "AAAAAAAAAAAAAAAAAADwPwAAAAAAAABAAAAAAAAAJEAAAAAAAAAmQAAAAAAAAChA"}}"""
        @test read_ndarray(numpy) == A
        @test read_ndarray("[1, $numpy]"; pointer="/1") == A
        for v in (Int32[-1, 2], [true, false], ComplexF64[1 - 2im], UInt8[0, 255], reshape(Int64[1, 2, 3, 4, 5, 6], 3, 2))
            @test read_ndarray(ndarray_json(v)) == v
            @test eltype(read_ndarray(ndarray_json(v))) == eltype(v)
        end
        @test size(read_ndarray(ndarray_json(fill(2.5)))) == ()
        @test read_ndarray(ndarray_json(A')) == permutedims(A)  # a lazy transpose is written as its elements
        err = try read_ndarray(Float32, ndarray_json(A)); nothing catch e; e end
        @test err isa AcademyError && err.status == Academy.ACADEMY_ERR_INVALID_ARGUMENT
        err = try read_ndarray("[1, 2]"); nothing catch e; e end
        @test err isa AcademyError && err.status == Academy.ACADEMY_ERR_INVALID_ARGUMENT
        @test read_bytes(bytes_json(UInt8[0x61, 0x00, 0xff])) == UInt8[0x61, 0x00, 0xff]
        @test read_bytes(bytes_json("")) == UInt8[]
        @test json_get(py_tuple("1", "\"two\""), "/py~1tuple/1") == "\"two\""
    end

    exchange = spawn_exchange()
    factory = Factory(url(exchange))
    user = user_client(factory, "julia-user")

    @testset "a user calls an agent served by this process" begin
        agent = agent_client(factory, register_agent(user, "[\"Counter\"]"))
        id = mailbox_id(agent)
        @test status(user, id) == :active
        serving = serve(handler, agent)
        @test action(user, id, "add"; args="[1, 2, 3]", timeout_s=10) == "6"
        @test action(user, id, "echo"; args="[\"hi\"]", timeout_s=10) == "[\"hi\"]"
        @test ping(user, id; timeout_s=10) > 0
        err = try action(user, id, "fail"; timeout_s=10); nothing catch e; e end
        @test err isa AcademyError && err.status == ACADEMY_ERR_REMOTE
        @test occursin("failing on purpose", err.message)
        stop(agent)
        @test wait(serving) == ACADEMY_OK
        # Nobody serves now: the call times out.
        err = try action(user, id, "add"; args="[1]", timeout_s=0.3); nothing catch e; e end
        @test err isa AcademyError && err.status == ACADEMY_ERR_TIMEOUT
    end

    @testset "an agent computes on arrays it is sent" begin
        agent = agent_client(factory, register_agent(user, "[\"RowSums\"]"))
        id = mailbox_id(agent)
        serving = serve(agent) do action, args, kwargs
            ndarray_json(vec(sum(read_ndarray(Float64, args; pointer="/0"); dims=2)))
        end
        A = [0.0 1.0 2.0; 10.0 11.0 12.0]
        @test read_ndarray(action(user, id, "row_sums"; args="[" * ndarray_json(A) * "]", timeout_s=10)) == [3.0, 33.0]
        stop(agent)
        @test wait(serving) == ACADEMY_OK
    end

    @testset "1000 actions in flight through one queue" begin
        agent = agent_client(factory, register_agent(user, "[\"Counter\"]"))
        id = mailbox_id(agent)
        q = Queue()
        serving = serve(handler, agent; queue=q)
        calls = [action_async(user, id, "add"; args="[$i, 1]", timeout_s=30, queue=q) for i in 1:1000]
        @test [fetch(c) for c in calls] == [string(i + 1) for i in 1:1000]
        # The same from 100 tasks with the waiting form.
        results = fetch.([@async action(user, id, "add"; args="[$i, 2]", timeout_s=30) for i in 1:100])
        @test results == [string(i + 2) for i in 1:100]
        shutdown_agent(user, id)
        @test wait(serving) == ACADEMY_OK
        close(q)
        @test_throws AcademyError action_async(user, id, "add"; queue=q)
    end

    @testset "a handler sees its request cancelled" begin
        agent = agent_client(factory, register_agent(user, "[\"Waiter\"]"))
        id = mailbox_id(agent)
        seen = Channel{Bool}(1)
        serving = serve(agent) do action, args, kwargs
            started = time()
            while !cancelled() && time() - started < 10
                sleep(0.05)
            end
            put!(seen, cancelled())
            "null"
        end
        call = action_async(user, id, "wait"; timeout_s=30)
        sleep(0.5)
        terminate(user, id)
        @test take!(seen)
        @test_throws AcademyError fetch(call)
        @test wait(serving) == ACADEMY_ERR_MAILBOX_TERMINATED
        @test_throws ArgumentError cancelled()
    end

    @testset "listen" begin
        agent = agent_client(factory, register_agent(user, "[\"Listener\"]"))
        id = mailbox_id(agent)
        messages = listen(agent)
        user_id = mailbox_id(user)
        sent = [message_new(user_id, id, "{\"kind\": \"ping-request\"}") for _ in 1:10]
        foreach(m -> send_message(user, m), sent)
        got = [take!(messages) for _ in 1:10]
        @test length(got) == 10 && all(m -> occursin("ping-request", m), got)
        close!(agent)
        @test timedwait(() -> !isopen(messages), 10.0) == :ok
    end

    close!(user)
    close!(exchange)
end
