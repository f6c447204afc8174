!> An agent written in Fortran: registers "examples.FortranCalculator" on
!> the exchange, prints its agent id, and serves until a user asks it to
!> shut down. Its actions: add(a, b), echo(x), fail(why), calls() (how
!> many requests it handled before, counted through user_data), wait()
!> (works until its caller cancels it, at most 10 s) and cancelled() (how
!> many waits saw their caller cancel).
!>
!>   calculator_agent EXCHANGE_URL
module calculator_actions
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: error_unit
  use academy
  implicit none
  private
  public :: calculator

  !> How many wait() requests saw their caller cancel them.
  integer :: cancelled_waits = 0

  interface
    !> POSIX usleep(3), for wait()'s pauses between its checks.
    function usleep(microseconds) bind(C, name="usleep") result(status)
      import :: c_int
      integer(c_int), value :: microseconds
      integer(c_int) :: status
    end function usleep
  end interface

contains

  !> The action handler (academy_action_fn). action, args_json and
  !> kwargs_json are C strings owned by the library; user_data points at
  !> the program's request counter. One request at a time (the factory's
  !> max_concurrency is 1), so the counter needs no lock.
  subroutine calculator(user_data, action, args_json, kwargs_json, reply) bind(C)
    type(c_ptr), value :: user_data, action, args_json, kwargs_json, reply
    integer(c_int), pointer :: calls
    character(len=:), allocatable :: name, args
    character(len=64) :: text
    real(c_double) :: a, b
    integer :: ios

    call c_f_pointer(user_data, calls)
    name = academy_c_string(action)
    args = academy_c_string(args_json)
    select case (name)
    case ('add')
      ! args is a JSON array "[a, b]": a list-directed read of its inside.
      read (args(2:len(args) - 1), *, iostat=ios) a, b
      if (ios /= 0) then
        call reply_error('add takes two positional numbers, not ' // args // ' ' // academy_c_string(kwargs_json))
      else
        write (text, '(g0)') a + b
        call reply_ok(trim(text))
      end if
    case ('echo')
      ! "[x]" -> x: the first argument, as JSON.
      call reply_ok(args(2:len(args) - 1))
    case ('fail')
      call reply_error('the Fortran agent failed: ' // args)
    case ('calls')
      write (text, '(i0)') calls
      call reply_ok(trim(text))
    case ('wait')
      call wait_until_cancelled()
    case ('cancelled')
      write (text, '(i0)') cancelled_waits
      call reply_ok(trim(text))
    case default
      call reply_error('the Fortran calculator has no action named "' // name // '"')
    end select
    calls = calls + 1

  contains

    !> A long computation that stops early once its caller gave up: every
    !> 50 ms it asks academy_reply_cancelled. A cancelled reply is still
    !> completed; the library answers that with ACADEMY_ERR_CLOSED.
    subroutine wait_until_cancelled()
      logical :: cancelled
      integer :: turn
      cancelled = .false.
      do turn = 1, 200
        if (academy_reply_cancelled(reply, cancelled) /= ACADEMY_OK) exit
        if (cancelled) exit
        if (usleep(50000_c_int) /= 0) exit
      end do
      if (cancelled) then
        cancelled_waits = cancelled_waits + 1
        if (academy_reply_ok(reply, 'null') /= ACADEMY_ERR_CLOSED) then
          write (error_unit, '(a)') 'wait: a cancelled reply was not closed'
        end if
      else
        call reply_error('wait was not cancelled within 10 s')
      end if
    end subroutine wait_until_cancelled

    subroutine reply_ok(result_json)
      character(len=*), intent(in) :: result_json
      if (academy_reply_ok(reply, result_json) /= ACADEMY_OK) then
        write (error_unit, '(a)') 'academy_reply_ok: ' // academy_last_error()
      end if
    end subroutine reply_ok

    subroutine reply_error(message)
      character(len=*), intent(in) :: message
      if (academy_reply_error(reply, message) /= ACADEMY_OK) then
        write (error_unit, '(a)') 'academy_reply_error: ' // academy_last_error()
      end if
    end subroutine reply_error
  end subroutine calculator

end module calculator_actions

program calculator_agent
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: error_unit
  use academy
  use calculator_actions, only: calculator
  implicit none

  type(academy_factory) :: factory
  type(academy_client) :: registrar, agent
  character(len=:), allocatable :: registration, id
  character(len=1024) :: url
  integer(c_int), target :: calls = 0

  if (command_argument_count() < 1) then
    write (error_unit, '(a)') 'usage: calculator_agent EXCHANGE_URL'
    stop 2
  end if
  call get_command_argument(1, url)

  call check(academy_http_factory_new(url, factory), 'academy_http_factory_new')
  call check(academy_user_client_new(factory, registrar, name='fortran-registrar'), 'academy_user_client_new')
  call check(academy_client_register_agent(registrar, 'examples.FortranCalculator', registration, &
                                           name='fortran-calculator'), 'academy_client_register_agent')
  call check(academy_agent_client_new(factory, registration, agent), 'academy_agent_client_new')
  call check(academy_client_mailbox_id(agent, id), 'academy_client_mailbox_id')
  print '(a)', id
  flush (6)

  ! Blocks until a shutdown request; the handler runs on a library thread.
  call check(academy_agent_serve(agent, calculator, c_loc(calls)), 'academy_agent_serve')
  write (error_unit, '(a, i0, a)') 'calculator: shut down after ', calls, ' requests'

  call academy_client_free(agent)
  call academy_client_free(registrar)
  call academy_factory_free(factory)

contains

  !> Stops with the library's detail when a call failed.
  subroutine check(status, what)
    integer(c_int), intent(in) :: status
    character(len=*), intent(in) :: what
    if (status /= ACADEMY_OK) then
      write (error_unit, '(4a)') what, ' failed: ', academy_status_str(status), ': ' // academy_last_error()
      error stop 1
    end if
  end subroutine check

end program calculator_agent
