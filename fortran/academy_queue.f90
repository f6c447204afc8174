!> The completion queue wrappers of the academy module (DESIGN.md 2b).
!>
!> Link academy_queue.o (make fortran builds it) beside academy.o into a
!> program that uses them, as examples-fortran/queue_calls.f90 does. The
!> interfaces (and the C declarations) are in fortran/academy.f90.
submodule (academy) academy_completion_queue
  implicit none

contains

  ! Copies of the module's private c_str and optional_c_str: gfortran
  ! (12 at least) emits private module procedures as local symbols, so a
  ! submodule compiled from another file cannot link to them.

  !> A NUL-terminated copy of s without its trailing blanks, for C.
  pure function q_str(s) result(buf)
    character(len=*), intent(in) :: s
    character(kind=c_char) :: buf(len_trim(s) + 1)
    integer :: i
    do i = 1, len_trim(s)
      buf(i) = s(i:i)
    end do
    buf(size(buf)) = c_null_char
  end function q_str

  !> A pointer to a C copy of s kept in buf, or NULL when s is absent.
  function optional_q_str(s, buf) result(p)
    character(len=*), intent(in), optional :: s
    character(kind=c_char), allocatable, target, intent(out) :: buf(:)
    type(c_ptr) :: p
    p = c_null_ptr
    if (present(s)) then
      buf = q_str(s)
      p = c_loc(buf)
    end if
  end function optional_q_str

  module function academy_queue_new(queue) result(status)
    type(academy_queue), intent(out) :: queue
    integer(c_int) :: status
    type(c_ptr) :: out
    status = c_queue_new(out)
    if (status == ACADEMY_OK) queue%ptr = out
  end function academy_queue_new

  module subroutine academy_queue_free(queue)
    type(academy_queue), intent(inout) :: queue
    call c_queue_free(queue%ptr)
    queue%ptr = c_null_ptr
  end subroutine academy_queue_free

  module function academy_queue_fd(queue, fd) result(status)
    type(academy_queue), intent(in) :: queue
    integer(c_int), intent(out) :: fd
    integer(c_int) :: status
    integer(c_int) :: out
    status = c_queue_fd(queue%ptr, out)
    if (status == ACADEMY_OK) fd = out
  end function academy_queue_fd

  !> Copies the event into Fortran and frees the C one.
  module function academy_queue_poll(queue, timeout_s, event) result(status)
    type(academy_queue), intent(in) :: queue
    real(c_double), intent(in) :: timeout_s
    type(academy_event), intent(out) :: event
    integer(c_int) :: status
    type(c_ptr) :: out
    type(academy_event_c), pointer :: ev
    status = c_queue_poll(queue%ptr, timeout_s, out)
    if (status /= ACADEMY_OK) return
    call c_f_pointer(out, ev)
    event%kind = ev%kind
    event%token = ev%token
    event%status = ev%status
    event%rtt_s = ev%rtt_s
    event%reply = ev%reply
    if (c_associated(ev%json)) event%json = academy_c_string(ev%json)
    if (c_associated(ev%error)) event%error = academy_c_string(ev%error)
    if (c_associated(ev%action)) event%action = academy_c_string(ev%action)
    if (c_associated(ev%args_json)) event%args_json = academy_c_string(ev%args_json)
    if (c_associated(ev%kwargs_json)) event%kwargs_json = academy_c_string(ev%kwargs_json)
    call c_event_free(out)
  end function academy_queue_poll

  module function academy_client_request_async(client, dest_json, body_json, timeout_s, queue, token) result(status)
    type(academy_client), intent(in) :: client
    character(len=*), intent(in) :: dest_json, body_json
    real(c_double), intent(in) :: timeout_s
    type(academy_queue), intent(in) :: queue
    integer(c_int64_t), intent(in) :: token
    integer(c_int) :: status
    status = c_client_request_async(client%ptr, q_str(dest_json), q_str(body_json), timeout_s, queue%ptr, token)
  end function academy_client_request_async

  module function academy_client_action_async(client, agent_id_json, action, timeout_s, queue, token, &
      args_json, kwargs_json) result(status)
    type(academy_client), intent(in) :: client
    character(len=*), intent(in) :: agent_id_json, action
    real(c_double), intent(in) :: timeout_s
    type(academy_queue), intent(in) :: queue
    integer(c_int64_t), intent(in) :: token
    character(len=*), intent(in), optional :: args_json, kwargs_json
    integer(c_int) :: status
    character(kind=c_char), allocatable, target :: args_buf(:), kwargs_buf(:)
    status = c_client_action_async(client%ptr, q_str(agent_id_json), q_str(action), &
                                   optional_q_str(args_json, args_buf), optional_q_str(kwargs_json, kwargs_buf), &
                                   timeout_s, queue%ptr, token)
  end function academy_client_action_async

  module function academy_client_ping_async(client, agent_id_json, timeout_s, queue, token) result(status)
    type(academy_client), intent(in) :: client
    character(len=*), intent(in) :: agent_id_json
    real(c_double), intent(in) :: timeout_s
    type(academy_queue), intent(in) :: queue
    integer(c_int64_t), intent(in) :: token
    integer(c_int) :: status
    status = c_client_ping_async(client%ptr, q_str(agent_id_json), timeout_s, queue%ptr, token)
  end function academy_client_ping_async

  module function academy_client_listen(client, queue, token) result(status)
    type(academy_client), intent(in) :: client
    type(academy_queue), intent(in) :: queue
    integer(c_int64_t), intent(in) :: token
    integer(c_int) :: status
    status = c_client_listen(client%ptr, queue%ptr, token)
  end function academy_client_listen

  module function academy_agent_serve_queue(client, queue, token) result(status)
    type(academy_client), intent(in) :: client
    type(academy_queue), intent(in) :: queue
    integer(c_int64_t), intent(in) :: token
    integer(c_int) :: status
    status = c_agent_serve_queue(client%ptr, queue%ptr, token)
  end function academy_agent_serve_queue

end submodule academy_completion_queue
