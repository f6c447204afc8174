!> A user written in Fortran: calls the actions of an agent (for example a
!> Python agent launched by academy's Manager with actions add(a, b),
!> echo(x) and fail()), sends it a message and receives the answer, then
!> asks it to shut down. Prints one line per step.
!>
!>   call_agent EXCHANGE_URL AGENT_ID_JSON
program call_agent
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: error_unit
  use academy
  implicit none

  type(academy_factory) :: factory
  type(academy_client) :: user
  character(len=:), allocatable :: agent, me, result, body, message, response, error
  character(len=4096) :: arg
  real(c_double) :: rtt
  integer(c_int) :: status

  if (command_argument_count() < 2) then
    write (error_unit, '(a)') 'usage: call_agent EXCHANGE_URL AGENT_ID_JSON'
    stop 2
  end if
  call get_command_argument(1, arg)
  call check(academy_http_factory_new(arg, factory), 'academy_http_factory_new')
  call get_command_argument(2, arg)
  agent = trim(arg)
  call check(academy_user_client_new(factory, user, name='fortran-user'), 'academy_user_client_new')

  ! Actions with positional and keyword arguments (JSON in, JSON out).
  call check(academy_client_action(user, agent, 'add', 30d0, result, args_json='[2, 3]'), 'add')
  print '(2a)', 'add ', result
  call check(academy_client_action(user, agent, 'add', 30d0, result, kwargs_json='{"a": 1.5, "b": 2}'), 'add')
  print '(2a)', 'add ', result
  call check(academy_client_action(user, agent, 'echo', 30d0, result, args_json='[{"k": [1, "x", null, 2.5]}]'), 'echo')
  print '(2a)', 'echo ', result

  ! A failing action: ACADEMY_ERR_REMOTE, the remote traceback in academy_last_error().
  status = academy_client_action(user, agent, 'fail', 30d0, result)
  error = academy_last_error()
  print '(3a, l1)', 'fail ', academy_status_str(status), ' traceback ', index(error, 'Traceback') > 0
  print '(2a)', 'fail last line ', last_line(error)

  call check(academy_client_ping(user, agent, 30d0, rtt), 'ping')
  print '(a, l1)', 'ping ', rtt > 0

  ! The same call as a request message: build the body, send, match the response.
  call check(academy_action_request_body('add', body, args_json='[40, 2]'), 'academy_action_request_body')
  call check(academy_client_request(user, agent, body, 30d0, response), 'academy_client_request')
  call check(academy_message_result(response, result), 'academy_message_result')
  print '(2a)', 'request add ', result

  ! A plain send and receive: a ping request message and its response.
  call check(academy_client_mailbox_id(user, me), 'academy_client_mailbox_id')
  call check(academy_message_new(me, agent, '{"kind": "ping-request"}', message), 'academy_message_new')
  call check(academy_client_send(user, message), 'academy_client_send')
  call check(academy_client_recv(user, 30d0, response), 'academy_client_recv')
  print '(a, l1)', 'recv success-response ', index(response, '"success-response"') > 0

  call check(academy_client_shutdown_agent(user, agent), 'academy_client_shutdown_agent')
  print '(a)', 'shutdown sent'
  call check(academy_client_close(user), 'academy_client_close')
  call academy_client_free(user)
  call academy_factory_free(factory)

contains

  subroutine check(status, what)
    integer(c_int), intent(in) :: status
    character(len=*), intent(in) :: what
    if (status /= ACADEMY_OK) then
      write (error_unit, '(4a)') what, ' failed: ', academy_status_str(status), ': ' // academy_last_error()
      error stop 1
    end if
  end subroutine check

  !> The last non-empty line of a text (a traceback's exception line).
  function last_line(text) result(line)
    character(len=*), intent(in) :: text
    character(len=:), allocatable :: line
    integer :: end, start
    end = len_trim(text)
    do while (end > 0)
      if (text(end:end) /= new_line('a')) exit
      end = end - 1
    end do
    start = index(text(1:end), new_line('a'), back=.true.) + 1
    line = text(start:end)
  end function last_line

end program call_agent
