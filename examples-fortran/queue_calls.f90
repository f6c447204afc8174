!> Log lines counted by a bind(C) callback. It runs on library threads,
!> so it only sets a flag (every thread writes the same value).
module queue_calls_log
  use, intrinsic :: iso_c_binding
  implicit none
  logical, volatile :: log_seen = .false.

contains

  subroutine on_log(user_data, level, target, message) bind(C)
    type(c_ptr), value :: user_data
    integer(c_int), value :: level
    type(c_ptr), value :: target, message
    ! A line as documented: a level, both strings, our NULL user_data.
    if (level > 0 .and. c_associated(target) .and. c_associated(message) .and. .not. c_associated(user_data)) &
      log_seen = .true.
  end subroutine on_log

end module queue_calls_log

!> A Fortran program with many actions in flight from one thread through a
!> completion queue: 20 calls of add(i, 1) and a ping to an agent (for
!> example a Python agent with an add(a, b) action), and an agent of its
!> own served from the same queue, answered by this loop. Also makes
!> Redis and hybrid factories (without contacting Redis), names statuses
!> and sees the log lines of an exchange it spawns through a callback. Prints one line per step.
!>
!>   queue_calls EXCHANGE_URL AGENT_ID_JSON
program queue_calls
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: error_unit
  use academy
  use queue_calls_log
  implicit none

  integer, parameter :: n = 20
  integer(c_int64_t), parameter :: ping_token = 100, serve_token = 200, double_token = 300
  type(academy_factory) :: factory, redis, hybrid, local_factory
  type(academy_client) :: user, doubler, local_user
  type(academy_exchange) :: exchange
  type(academy_queue) :: queue
  type(academy_event) :: event
  character(len=:), allocatable :: agent, registration, own, local_url
  character(len=4096) :: arg
  integer(c_int64_t) :: token
  integer :: correct, pending, value, answered, doubled
  logical :: pinged, ended

  if (command_argument_count() < 2) then
    write (error_unit, '(a)') 'usage: queue_calls EXCHANGE_URL AGENT_ID_JSON'
    stop 2
  end if
  call check(academy_set_log_callback(ACADEMY_LOG_DEBUG, on_log), 'academy_set_log_callback')
  call get_command_argument(1, arg)
  call check(academy_http_factory_new(arg, factory), 'academy_http_factory_new')
  call get_command_argument(2, arg)
  agent = trim(arg)
  call check(academy_user_client_new(factory, user, name='fortran-queue-user'), 'academy_user_client_new')
  call check(academy_queue_new(queue), 'academy_queue_new')

  ! An agent of this program, served from the same queue.
  call check(academy_client_register_agent(user, 'examples.Doubler', registration), 'register')
  call check(academy_agent_client_new(factory, registration, doubler), 'academy_agent_client_new')
  call check(academy_client_mailbox_id(doubler, own), 'academy_client_mailbox_id')
  call check(academy_agent_serve_queue(doubler, queue, serve_token), 'academy_agent_serve_queue')

  ! Everything in flight before the first poll.
  do token = 1, n
    call check(academy_client_action_async(user, agent, 'add', 30d0, queue, token, &
                                           args_json='[' // itoa(int(token)) // ', 1]'), 'action_async')
  end do
  call check(academy_client_ping_async(user, agent, 30d0, queue, ping_token), 'ping_async')
  call check(academy_client_action_async(user, own, 'double', 30d0, queue, double_token, args_json='[21]'), &
             'action_async double')

  correct = 0
  answered = 0
  doubled = 0
  pinged = .false.
  pending = n + 2
  do while (pending > 0)
    call check(academy_queue_poll(queue, 30d0, event), 'academy_queue_poll')
    select case (event%kind)
    case (ACADEMY_EVENT_REQUEST)
      ! The doubler's action: args_json is "[x]".
      read (event%args_json(2:len(event%args_json) - 1), *) value
      call check(academy_reply_ok(event%reply, itoa(2 * value)), 'academy_reply_ok')
      answered = answered + 1
    case (ACADEMY_EVENT_CALL)
      pending = pending - 1
      if (event%status /= ACADEMY_OK) then
        write (error_unit, '(4a)') 'call failed: ', academy_status_name(event%status), ': ', event%error
        error stop 1
      end if
      if (event%token == ping_token) then
        pinged = event%rtt_s > 0
      else if (event%token == double_token) then
        read (event%json, *) doubled
      else
        read (event%json, *) value
        if (value == event%token + 1) correct = correct + 1
      end if
    end select
  end do
  print '(a, i0, a, i0, a)', 'calls ', correct, ' of ', n, ' correct'
  print '(a, l1)', 'ping ', pinged
  print '(a, i0, a, i0)', 'served double ', doubled, ' answered ', answered

  ! Stopping the serving posts its ENDED event.
  call check(academy_agent_stop(doubler), 'academy_agent_stop')
  ended = .false.
  do while (.not. ended)
    call check(academy_queue_poll(queue, 30d0, event), 'academy_queue_poll')
    ended = event%kind == ACADEMY_EVENT_ENDED .and. event%token == serve_token
  end do
  print '(2a)', 'serving ended ', academy_status_name(event%status)
  print '(2a)', 'empty queue ', academy_status_name(academy_queue_poll(queue, 0d0, event))

  ! The Redis and hybrid factories check their options without contacting Redis.
  call check(academy_redis_factory_new(redis, '{"hostname": "localhost", "port": 6379}'), 'redis factory')
  call check(academy_hybrid_factory_new(hybrid, '{"namespace": "fortran"}'), 'hybrid factory')
  print '(a, l1, l1)', 'factories ', c_associated(redis%ptr), c_associated(hybrid%ptr)
  call academy_factory_free(redis)
  call academy_factory_free(hybrid)
  print '(2a)', 'redis with an HTTP option ', &
    academy_status_name(academy_redis_factory_new(redis, '{"ssl_verify": false}'))

  call academy_queue_free(queue)
  call check(academy_client_close(doubler), 'close doubler')
  call academy_client_free(doubler)
  call check(academy_client_close(user), 'close user')
  call academy_client_free(user)
  call academy_factory_free(factory)
  ! An exchange in this process logs each request it serves (at DEBUG);
  ! academy_exchange_stop returns once it has stopped, lines logged.
  call check(academy_exchange_spawn(exchange), 'academy_exchange_spawn')
  call check(academy_exchange_url(exchange, local_url), 'academy_exchange_url')
  call check(academy_http_factory_new(local_url, local_factory), 'academy_http_factory_new (local)')
  call check(academy_user_client_new(local_factory, local_user), 'academy_user_client_new (local)')
  call check(academy_client_close(local_user), 'close local user')
  call academy_client_free(local_user)
  call academy_factory_free(local_factory)
  call check(academy_exchange_stop(exchange), 'academy_exchange_stop')
  call academy_exchange_free(exchange)
  call check(academy_set_log_callback(ACADEMY_LOG_OFF), 'academy_set_log_callback off')
  print '(a, l1)', 'log lines seen ', log_seen

contains

  subroutine check(status, what)
    integer(c_int), intent(in) :: status
    character(len=*), intent(in) :: what
    if (status /= ACADEMY_OK) then
      write (error_unit, '(4a)') what, ' failed: ', academy_status_name(status), ': ' // academy_last_error()
      error stop 1
    end if
  end subroutine check

  function itoa(i) result(s)
    integer, intent(in) :: i
    character(len=:), allocatable :: s
    character(len=24) :: buf
    write (buf, '(i0)') i
    s = trim(buf)
  end function itoa

end program queue_calls
