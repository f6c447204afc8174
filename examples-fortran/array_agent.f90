!> An agent written in Fortran that computes on numpy arrays: registers
!> "examples.FortranArrays", prints its agent id, and serves until a user
!> asks it to shut down. A Python user calls it with academy-py's
!> default Handle (pickled numpy arrays); the handler reads and writes
!> them as Fortran arrays (academy_ndarray_read, academy_ndarray_write):
!>   scale(a, factor)  a 2-d float64 array times factor
!>   row_sums(a)       the sums of the rows of a 2-d float64 array
!>   cumsum(v)         the running sums of a 1-d int64 array
!>   conj(z)           the conjugates of a 1-d complex128 array
!>   count(mask)       how many elements of a 1-d bool array are true
!>   reverse(b)        bytes, reversed
!>
!>   array_agent EXCHANGE_URL
module array_actions
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: error_unit
  use academy
  implicit none
  private
  public :: arrays

contains

  !> The action handler (academy_action_fn); runs on a library thread.
  !> user_data points at the program's request counter (one request at a
  !> time: max_concurrency is 1 by default, so it needs no lock).
  subroutine arrays(user_data, action, args_json, kwargs_json, reply) bind(C)
    type(c_ptr), value :: user_data, action, args_json, kwargs_json, reply
    integer(c_int), pointer :: calls
    character(len=:), allocatable :: name, args, result, why

    call c_f_pointer(user_data, calls)
    calls = calls + 1
    name = academy_c_string(action)
    args = academy_c_string(args_json)
    if (academy_c_string(kwargs_json) /= '{}') then
      call answer(ACADEMY_ERR_INVALID_ARGUMENT, name // ' takes no keyword arguments')
      return
    end if
    select case (name)
    case ('scale')
      call scale()
    case ('row_sums')
      call row_sums()
    case ('cumsum')
      call cumsum()
    case ('conj')
      call conj()
    case ('count')
      call count_true()
    case ('reverse')
      call reverse()
    case default
      call answer(ACADEMY_ERR_INVALID_ARGUMENT, 'no action named "' // name // '"')
    end select

  contains

    subroutine scale()
      real(c_double), allocatable :: a(:, :)
      real(c_double) :: factor
      character(len=:), allocatable :: factor_json
      integer :: ios
      ! a(i, j) is numpy's a[i-1, j-1], whatever order the array came in.
      if (.not. ok(academy_ndarray_read(args, a, pointer='/0', errmsg=why))) return
      if (.not. ok(academy_json_get(args, '/1', factor_json))) return
      read (factor_json, *, iostat=ios) factor
      if (ios /= 0) then
        call answer(ACADEMY_ERR_INVALID_ARGUMENT, 'scale: the factor is not a number: ' // factor_json)
        return
      end if
      call answer(academy_ndarray_write(factor * a, result))
    end subroutine scale

    subroutine row_sums()
      real(c_double), allocatable :: a(:, :)
      if (.not. ok(academy_ndarray_read(args, a, pointer='/0', errmsg=why))) return
      call answer(academy_ndarray_write(sum(a, dim=2), result))
    end subroutine row_sums

    subroutine cumsum()
      integer(c_int64_t), allocatable :: v(:)
      integer :: i
      if (.not. ok(academy_ndarray_read(args, v, pointer='/0', errmsg=why))) return
      do i = 2, size(v)
        v(i) = v(i) + v(i - 1)
      end do
      call answer(academy_ndarray_write(v, result))
    end subroutine cumsum

    subroutine conj()
      complex(c_double_complex), allocatable :: z(:)
      if (.not. ok(academy_ndarray_read(args, z, pointer='/0', errmsg=why))) return
      call answer(academy_ndarray_write(conjg(z), result))
    end subroutine conj

    subroutine count_true()
      logical(c_bool), allocatable :: mask(:)
      character(len=24) :: text
      if (.not. ok(academy_ndarray_read(args, mask, pointer='/0', errmsg=why))) return
      write (text, '(i0)') count(logical(mask))
      result = trim(text)
      call answer(ACADEMY_OK)
    end subroutine count_true

    subroutine reverse()
      character(len=:), allocatable :: b, r
      integer :: i, n
      if (.not. ok(academy_bytes_read(args, b, pointer='/0', errmsg=why))) return
      n = len(b)
      allocate (character(len=n) :: r)
      do i = 1, n
        r(i:i) = b(n + 1 - i:n + 1 - i)
      end do
      call answer(academy_bytes_write(r, result))
    end subroutine reverse

    !> Whether a read succeeded; if not, answers the caller with why.
    logical function ok(status)
      integer(c_int), intent(in) :: status
      ok = status == ACADEMY_OK
      if (.not. ok) then
        if (.not. allocated(why)) why = academy_last_error()
        call answer(status, name // ': ' // why)
      end if
    end function ok

    !> Completes the reply: with result when status is ACADEMY_OK, else
    !> with the error message (or academy_last_error()).
    subroutine answer(status, message)
      integer(c_int), intent(in) :: status
      character(len=*), intent(in), optional :: message
      integer(c_int) :: replied
      if (status == ACADEMY_OK) then
        replied = academy_reply_ok(reply, result)
      else if (present(message)) then
        replied = academy_reply_error(reply, message)
      else
        replied = academy_reply_error(reply, name // ': ' // academy_last_error())
      end if
      if (replied /= ACADEMY_OK) write (error_unit, '(a)') 'array_agent: replying: ' // academy_last_error()
    end subroutine answer
  end subroutine arrays

end module array_actions

program array_agent
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: error_unit
  use academy
  use array_actions, only: arrays
  implicit none

  type(academy_factory) :: factory
  type(academy_client) :: registrar, agent
  character(len=:), allocatable :: registration, id
  character(len=1024) :: url
  integer(c_int), target :: calls = 0

  if (command_argument_count() < 1) then
    write (error_unit, '(a)') 'usage: array_agent EXCHANGE_URL'
    stop 2
  end if
  call get_command_argument(1, url)

  call check(academy_http_factory_new(url, factory), 'academy_http_factory_new')
  call check(academy_user_client_new(factory, registrar, name='fortran-registrar'), 'academy_user_client_new')
  call check(academy_client_register_agent(registrar, 'examples.FortranArrays', registration, &
                                           name='fortran-arrays'), 'academy_client_register_agent')
  call check(academy_agent_client_new(factory, registration, agent), 'academy_agent_client_new')
  call check(academy_client_mailbox_id(agent, id), 'academy_client_mailbox_id')
  print '(a)', id
  flush (6)

  ! Blocks until a shutdown request; the handler runs on library threads.
  call check(academy_agent_serve(agent, arrays, c_loc(calls)), 'academy_agent_serve')
  write (error_unit, '(a, i0, a)') 'array_agent: shut down after ', calls, ' requests'

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

end program array_agent
