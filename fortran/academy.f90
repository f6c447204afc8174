!> Fortran bindings of libacademy (include/academy.h) through ISO_C_BINDING:
!> take part in Academy multi-agent systems (academy-py 1.0 wire
!> compatible) from Fortran 2008 and later.
!>
!> Conventions (see the README's "Fortran" section):
!> - Every call is an integer(c_int) function returning a status code,
!>   ACADEMY_OK (0) on success; academy_last_error() gives the detail of
!>   this thread's last failure.
!> - The procedures have the C functions' names and take the C
!>   arguments in the C order, except that the nullable ones (name,
!>   options_json, args_json, kwargs_json) are optional and come last.
!> - Strings in are character(len=*), passed without trailing blanks.
!>   Strings out are character(len=:), allocatable, intent(out) arguments,
!>   set only on success; the library's copy is freed here.
!> - Handles are the derived types academy_factory, academy_client and
!>   academy_exchange; free them with their _free subroutine.
!> - Timeouts are real(c_double) seconds (e.g. 30d0); < 0 waits forever.
!> - The module keeps no state, so its procedures may be called from
!>   handlers, which run on library threads. Compile code that runs in a
!>   handler with -frecursive (gfortran) so that its locals are on the stack.
!>
!> The completion queue (DESIGN.md 2b) is declared at the end; its bodies
!> are in the submodule fortran/academy_queue.f90: link
!> academy_queue.o beside academy.o to use it.
module academy
  use, intrinsic :: iso_c_binding
  implicit none
  private

  ! ---- status codes (academy_status; fixed values) ----
  integer(c_int), parameter, public :: ACADEMY_OK = 0
  integer(c_int), parameter, public :: ACADEMY_ERR_INVALID_ARGUMENT = 1
  integer(c_int), parameter, public :: ACADEMY_ERR_TIMEOUT = 2
  integer(c_int), parameter, public :: ACADEMY_ERR_BAD_ENTITY_ID = 3
  integer(c_int), parameter, public :: ACADEMY_ERR_MAILBOX_TERMINATED = 4
  integer(c_int), parameter, public :: ACADEMY_ERR_UNAUTHORIZED = 5
  integer(c_int), parameter, public :: ACADEMY_ERR_FORBIDDEN = 6
  integer(c_int), parameter, public :: ACADEMY_ERR_MESSAGE_TOO_LARGE = 7
  integer(c_int), parameter, public :: ACADEMY_ERR_BAD_REQUEST = 8
  integer(c_int), parameter, public :: ACADEMY_ERR_CONNECTION = 9
  integer(c_int), parameter, public :: ACADEMY_ERR_HTTP = 10
  integer(c_int), parameter, public :: ACADEMY_ERR_PROTOCOL = 11
  integer(c_int), parameter, public :: ACADEMY_ERR_CLOSED = 12
  integer(c_int), parameter, public :: ACADEMY_ERR_REMOTE = 13
  integer(c_int), parameter, public :: ACADEMY_ERR_INTERNAL = 99

  ! ---- mailbox status (academy_mailbox_status) ----
  integer(c_int), parameter, public :: ACADEMY_MAILBOX_MISSING = 0
  integer(c_int), parameter, public :: ACADEMY_MAILBOX_ACTIVE = 1
  integer(c_int), parameter, public :: ACADEMY_MAILBOX_INACTIVE = 2
  integer(c_int), parameter, public :: ACADEMY_MAILBOX_TERMINATED = 3

  ! ---- log levels (academy_log_level), for academy_set_log_callback ----
  integer(c_int), parameter, public :: ACADEMY_LOG_OFF = 0
  integer(c_int), parameter, public :: ACADEMY_LOG_ERROR = 1
  integer(c_int), parameter, public :: ACADEMY_LOG_WARN = 2
  integer(c_int), parameter, public :: ACADEMY_LOG_INFO = 3
  integer(c_int), parameter, public :: ACADEMY_LOG_DEBUG = 4
  integer(c_int), parameter, public :: ACADEMY_LOG_TRACE = 5

  ! ---- handles (opaque C pointers; NULL until made) ----
  type, public :: academy_factory
    type(c_ptr) :: ptr = c_null_ptr
  end type academy_factory

  type, public :: academy_client
    type(c_ptr) :: ptr = c_null_ptr
  end type academy_client

  type, public :: academy_exchange
    type(c_ptr) :: ptr = c_null_ptr
  end type academy_exchange

  ! ---- callbacks: write them as bind(C) procedures of these shapes ----
  abstract interface
    !> An action handler (academy_action_fn). action, args_json (a JSON
    !> array) and kwargs_json (a JSON object) are C strings valid during
    !> the call: read them with academy_c_string. Complete reply exactly
    !> once, now or later from any thread, with academy_reply_ok or
    !> academy_reply_error. Runs on a library thread.
    subroutine academy_action_fn(user_data, action, args_json, kwargs_json, reply) bind(C)
      import :: c_ptr
      type(c_ptr), value :: user_data, action, args_json, kwargs_json, reply
    end subroutine academy_action_fn

    !> Called once when a send of academy_client_send_async ends
    !> (academy_send_done_fn); error is NULL on success. Runs on a library
    !> thread; keep it short and make no blocking call from it.
    subroutine academy_send_done_fn(user_data, status, error) bind(C)
      import :: c_ptr, c_int
      type(c_ptr), value :: user_data
      integer(c_int), value :: status
      type(c_ptr), value :: error
    end subroutine academy_send_done_fn

    !> Receives one log line (academy_log_fn): level is an ACADEMY_LOG_
    !> value; target and message are C strings valid during the call (read
    !> them with academy_c_string). Runs on LIBRARY THREADS, several at
    !> once, and on the caller's: it must be thread-safe (compile it with
    !> -frecursive; guard shared state, e.g. with OpenMP atomics or a C
    !> helper) and quick, and must make no blocking libacademy call.
    subroutine academy_log_fn(user_data, level, target, message) bind(C)
      import :: c_ptr, c_int
      type(c_ptr), value :: user_data
      integer(c_int), value :: level
      type(c_ptr), value :: target, message
    end subroutine academy_log_fn
  end interface

  public :: academy_c_string
  public :: academy_version, academy_status_str, academy_status_name, academy_last_error
  public :: academy_set_log_callback
  public :: academy_http_factory_new, academy_redis_factory_new, academy_hybrid_factory_new
  public :: academy_factory_free
  public :: academy_user_client_new, academy_client_register_agent, academy_agent_client_new
  public :: academy_client_mailbox_id, academy_client_send, academy_client_send_async
  public :: academy_client_flush, academy_client_recv, academy_client_status
  public :: academy_client_terminate, academy_client_discover, academy_client_heartbeat
  public :: academy_client_heartbeat_status, academy_client_agent_stats
  public :: academy_client_share_mailbox, academy_client_shared_groups, academy_client_unshare_mailbox
  public :: academy_client_close, academy_client_free
  public :: academy_client_request, academy_client_action, academy_client_ping
  public :: academy_client_shutdown_agent
  public :: academy_agent_serve, academy_agent_stop, academy_reply_ok, academy_reply_error
  public :: academy_reply_cancelled
  public :: academy_message_new, academy_message_response, academy_action_request_body
  public :: academy_message_result, academy_user_id_new, academy_agent_id_new
  public :: academy_exchange_spawn, academy_exchange_url, academy_exchange_stop, academy_exchange_free

  ! ---- the C functions (include/academy.h). Required strings are
  ! NUL-terminated character arrays; nullable ones are pointers. ----
  interface
    function strlen(s) bind(C, name="strlen") result(n)
      import :: c_ptr, c_size_t
      type(c_ptr), value :: s
      integer(c_size_t) :: n
    end function strlen

    function c_version() bind(C, name="academy_version") result(s)
      import :: c_ptr
      type(c_ptr) :: s
    end function c_version

    function c_status_str(status) bind(C, name="academy_status_str") result(s)
      import :: c_ptr, c_int
      integer(c_int), value :: status
      type(c_ptr) :: s
    end function c_status_str

    function c_status_name(status) bind(C, name="academy_status_name") result(s)
      import :: c_ptr, c_int
      integer(c_int), value :: status
      type(c_ptr) :: s
    end function c_status_name

    function c_set_log_callback(callback, user_data, level) bind(C, name="academy_set_log_callback") result(status)
      import :: c_funptr, c_ptr, c_int
      type(c_funptr), value :: callback
      type(c_ptr), value :: user_data
      integer(c_int), value :: level
      integer(c_int) :: status
    end function c_set_log_callback

    function c_redis_factory_new(options_json, out) bind(C, name="academy_redis_factory_new") result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: options_json
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_redis_factory_new

    function c_hybrid_factory_new(options_json, out) bind(C, name="academy_hybrid_factory_new") result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: options_json
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_hybrid_factory_new

    function c_last_error() bind(C, name="academy_last_error") result(s)
      import :: c_ptr
      type(c_ptr) :: s
    end function c_last_error

    subroutine c_string_free(s) bind(C, name="academy_string_free")
      import :: c_ptr
      type(c_ptr), value :: s
    end subroutine c_string_free

    function c_http_factory_new(url, options_json, out) bind(C, name="academy_http_factory_new") result(status)
      import :: c_ptr, c_int, c_char
      character(kind=c_char), intent(in) :: url(*)
      type(c_ptr), value :: options_json
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_http_factory_new

    subroutine c_factory_free(factory) bind(C, name="academy_factory_free")
      import :: c_ptr
      type(c_ptr), value :: factory
    end subroutine c_factory_free

    function c_user_client_new(factory, name, out) bind(C, name="academy_user_client_new") result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: factory, name
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_user_client_new

    function c_client_register_agent(client, agent_types, name, out) &
        bind(C, name="academy_client_register_agent") result(status)
      import :: c_ptr, c_int, c_char
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: agent_types(*)
      type(c_ptr), value :: name
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_client_register_agent

    function c_agent_client_new(factory, registration_json, out) bind(C, name="academy_agent_client_new") result(status)
      import :: c_ptr, c_int, c_char
      type(c_ptr), value :: factory
      character(kind=c_char), intent(in) :: registration_json(*)
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_agent_client_new

    function c_client_mailbox_id(client, out) bind(C, name="academy_client_mailbox_id") result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: client
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_client_mailbox_id

    function c_client_send(client, message_json) bind(C, name="academy_client_send") result(status)
      import :: c_ptr, c_int, c_char
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: message_json(*)
      integer(c_int) :: status
    end function c_client_send

    function c_client_send_async(client, message_json, done, user_data) &
        bind(C, name="academy_client_send_async") result(status)
      import :: c_ptr, c_int, c_char, c_funptr
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: message_json(*)
      type(c_funptr), value :: done
      type(c_ptr), value :: user_data
      integer(c_int) :: status
    end function c_client_send_async

    function c_client_flush(client, timeout_s) bind(C, name="academy_client_flush") result(status)
      import :: c_ptr, c_int, c_double
      type(c_ptr), value :: client
      real(c_double), value :: timeout_s
      integer(c_int) :: status
    end function c_client_flush

    function c_client_recv(client, timeout_s, out) bind(C, name="academy_client_recv") result(status)
      import :: c_ptr, c_int, c_double
      type(c_ptr), value :: client
      real(c_double), value :: timeout_s
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_client_recv

    function c_client_status(client, id_json, out) bind(C, name="academy_client_status") result(status)
      import :: c_ptr, c_int, c_char
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: id_json(*)
      integer(c_int), intent(out) :: out
      integer(c_int) :: status
    end function c_client_status

    function c_client_terminate(client, id_json) bind(C, name="academy_client_terminate") result(status)
      import :: c_ptr, c_int, c_char
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: id_json(*)
      integer(c_int) :: status
    end function c_client_terminate

    function c_client_discover(client, agent_type, allow_subclasses, out) &
        bind(C, name="academy_client_discover") result(status)
      import :: c_ptr, c_int, c_char, c_bool
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: agent_type(*)
      logical(c_bool), value :: allow_subclasses
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_client_discover

    function c_client_heartbeat(client) bind(C, name="academy_client_heartbeat") result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: client
      integer(c_int) :: status
    end function c_client_heartbeat

    function c_client_heartbeat_status(client, id_json, out) bind(C, name="academy_client_heartbeat_status") result(status)
      import :: c_ptr, c_int, c_char, c_double
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: id_json(*)
      real(c_double), intent(out) :: out
      integer(c_int) :: status
    end function c_client_heartbeat_status

    function c_client_agent_stats(client, id_json, out) bind(C, name="academy_client_agent_stats") result(status)
      import :: c_ptr, c_int, c_char
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: id_json(*)
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_client_agent_stats

    function c_client_share_mailbox(client, id_json, group_id) bind(C, name="academy_client_share_mailbox") result(status)
      import :: c_ptr, c_int, c_char
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: id_json(*), group_id(*)
      integer(c_int) :: status
    end function c_client_share_mailbox

    function c_client_shared_groups(client, id_json, out) bind(C, name="academy_client_shared_groups") result(status)
      import :: c_ptr, c_int, c_char
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: id_json(*)
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_client_shared_groups

    function c_client_unshare_mailbox(client, id_json, group_id) bind(C, name="academy_client_unshare_mailbox") result(status)
      import :: c_ptr, c_int, c_char
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: id_json(*), group_id(*)
      integer(c_int) :: status
    end function c_client_unshare_mailbox

    function c_client_close(client) bind(C, name="academy_client_close") result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: client
      integer(c_int) :: status
    end function c_client_close

    subroutine c_client_free(client) bind(C, name="academy_client_free")
      import :: c_ptr
      type(c_ptr), value :: client
    end subroutine c_client_free

    function c_client_request(client, dest_json, body_json, timeout_s, out) &
        bind(C, name="academy_client_request") result(status)
      import :: c_ptr, c_int, c_char, c_double
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: dest_json(*), body_json(*)
      real(c_double), value :: timeout_s
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_client_request

    function c_client_action(client, agent_id_json, action, args_json, kwargs_json, timeout_s, out) &
        bind(C, name="academy_client_action") result(status)
      import :: c_ptr, c_int, c_char, c_double
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: agent_id_json(*), action(*)
      type(c_ptr), value :: args_json, kwargs_json
      real(c_double), value :: timeout_s
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_client_action

    function c_client_ping(client, agent_id_json, timeout_s, out) bind(C, name="academy_client_ping") result(status)
      import :: c_ptr, c_int, c_char, c_double
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: agent_id_json(*)
      real(c_double), value :: timeout_s
      real(c_double), intent(out) :: out
      integer(c_int) :: status
    end function c_client_ping

    function c_client_shutdown_agent(client, agent_id_json, terminate) &
        bind(C, name="academy_client_shutdown_agent") result(status)
      import :: c_ptr, c_int, c_char
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: agent_id_json(*)
      integer(c_int), value :: terminate
      integer(c_int) :: status
    end function c_client_shutdown_agent

    function c_agent_serve(client, handler, user_data) bind(C, name="academy_agent_serve") result(status)
      import :: c_ptr, c_int, c_funptr
      type(c_ptr), value :: client
      type(c_funptr), value :: handler
      type(c_ptr), value :: user_data
      integer(c_int) :: status
    end function c_agent_serve

    function c_agent_stop(client) bind(C, name="academy_agent_stop") result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: client
      integer(c_int) :: status
    end function c_agent_stop

    function c_reply_ok(reply, result_json) bind(C, name="academy_reply_ok") result(status)
      import :: c_ptr, c_int, c_char
      type(c_ptr), value :: reply
      character(kind=c_char), intent(in) :: result_json(*)
      integer(c_int) :: status
    end function c_reply_ok

    function c_reply_error(reply, message) bind(C, name="academy_reply_error") result(status)
      import :: c_ptr, c_int, c_char
      type(c_ptr), value :: reply
      character(kind=c_char), intent(in) :: message(*)
      integer(c_int) :: status
    end function c_reply_error

    function c_reply_cancelled(reply, cancelled) bind(C, name="academy_reply_cancelled") result(status)
      import :: c_ptr, c_int, c_bool
      type(c_ptr), value :: reply
      logical(c_bool), intent(out) :: cancelled
      integer(c_int) :: status
    end function c_reply_cancelled

    function c_message_new(src_json, dest_json, body_json, out) bind(C, name="academy_message_new") result(status)
      import :: c_ptr, c_int, c_char
      character(kind=c_char), intent(in) :: src_json(*), dest_json(*), body_json(*)
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_message_new

    function c_message_response(request_json, body_json, out) bind(C, name="academy_message_response") result(status)
      import :: c_ptr, c_int, c_char
      character(kind=c_char), intent(in) :: request_json(*), body_json(*)
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_message_response

    function c_action_request_body_as(action, args_json, kwargs_json, serialization, out) &
        bind(C, name="academy_action_request_body_as") result(status)
      import :: c_ptr, c_int, c_char
      character(kind=c_char), intent(in) :: action(*)
      type(c_ptr), value :: args_json, kwargs_json, serialization
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_action_request_body_as

    function c_message_result(response_json, out) bind(C, name="academy_message_result") result(status)
      import :: c_ptr, c_int, c_char
      character(kind=c_char), intent(in) :: response_json(*)
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_message_result

    function c_user_id_new(name, out) bind(C, name="academy_user_id_new") result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: name
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_user_id_new

    function c_agent_id_new(name, out) bind(C, name="academy_agent_id_new") result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: name
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_agent_id_new

    function c_exchange_spawn(options_json, out) bind(C, name="academy_exchange_spawn") result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: options_json
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_exchange_spawn

    function c_exchange_url(exchange, out) bind(C, name="academy_exchange_url") result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: exchange
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_exchange_url

    function c_exchange_stop(exchange) bind(C, name="academy_exchange_stop") result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: exchange
      integer(c_int) :: status
    end function c_exchange_stop

    subroutine c_exchange_free(exchange) bind(C, name="academy_exchange_free")
      import :: c_ptr
      type(c_ptr), value :: exchange
    end subroutine c_exchange_free
  end interface

  ! =====================================================================
  ! PYTHON VALUES: numpy arrays and bytes as Fortran arrays and strings.
  !
  ! A Python value that JSON has no form for reaches a handler, and
  ! leaves it, in the library's JSON forms (the README's "Python values"
  ! section): {"py/ndarray": {"dtype": "<f8", "shape": [2, 3], "order":
  ! "C", "data": "<base64>"}}, {"py/bytes": "<base64>"}. These procedures
  ! read and write them, encoding and decoding through the library.
  !
  ! Arrays keep numpy's indices: numpy's a[i, j] is a(i+1, j+1) of the
  ! Fortran array, whatever the order the array came in. A row-major
  ! (order "C") array is transposed while it is copied out (the copy is
  ! made anyway); a column-major one (order "F") is copied as it is.
  ! Written arrays are column-major (order "F") with the Fortran shape, so
  ! numpy gets an array with the same shape and elements, uncopied.
  ! =====================================================================

  public :: academy_json_get, academy_ndarray_read, academy_ndarray_write
  public :: academy_bytes_read, academy_bytes_write

  !> Reads the numpy array found at pointer (an RFC 6901 JSON pointer:
  !> '/0' for the first item of args_json; absent or '' for the whole
  !> text) in json into values, an allocatable array of rank 1 or 2 of
  !> real(c_double), real(c_float), integer(c_int32_t),
  !> integer(c_int64_t), complex(c_double_complex) or logical(c_bool):
  !>   status = academy_ndarray_read(args, a, pointer='/0', errmsg=why)
  !> The array's dtype must be the Fortran type's (float64, float32,
  !> int32, int64, complex128, bool) and its number of dimensions the
  !> rank; else ACADEMY_ERR_INVALID_ARGUMENT. values is allocated and set
  !> only on success; errmsg (optional) then gets the reason of a failure
  !> (academy_last_error()'s text for the library's).
  interface academy_ndarray_read
    module procedure read_f8_1, read_f8_2, read_f4_1, read_f4_2, read_i4_1, read_i4_2
    module procedure read_i8_1, read_i8_2, read_c16_1, read_c16_2, read_b1_1, read_b1_2
  end interface academy_ndarray_read

  !> Writes the JSON form of values (of the types and ranks that
  !> academy_ndarray_read reads) into json, for a result or an argument:
  !>   status = academy_ndarray_write(sums, result_json)
  interface academy_ndarray_write
    module procedure write_f8_1, write_f8_2, write_f4_1, write_f4_2, write_i4_1, write_i4_2
    module procedure write_i8_1, write_i8_2, write_c16_1, write_c16_2, write_b1_1, write_b1_2
  end interface academy_ndarray_write

  !> Reads bytes or a bytearray ({"py/bytes": ...}, {"py/bytearray": ...})
  !> found at pointer in json into data: a character(len=:), allocatable
  !> string or an allocatable integer(c_int8_t) array; errmsg as for
  !> academy_ndarray_read.
  interface academy_bytes_read
    module procedure bytes_read_string, bytes_read_int8
  end interface academy_bytes_read

  !> Writes {"py/bytes": ...} of data (a character string, all of it,
  !> trailing blanks included, or an integer(c_int8_t) array) into json.
  interface academy_bytes_write
    module procedure bytes_write_string, bytes_write_int8
  end interface academy_bytes_write

  !> The C layout of struct academy_ndarray (read-only, the library's).
  type, bind(C) :: c_ndarray
    type(c_ptr) :: dtype
    character(kind=c_char) :: kind
    integer(c_size_t) :: itemsize
    integer(c_size_t) :: ndim
    type(c_ptr) :: shape
    character(kind=c_char) :: order
    type(c_ptr) :: data
    integer(c_size_t) :: nbytes
  end type c_ndarray

  !> An array read by the library, checked against the Fortran type and
  !> rank it is read into: its extents in numpy's order.
  type :: array_view
    type(c_ptr) :: array = c_null_ptr
    type(c_ptr) :: data = c_null_ptr
    integer(c_size_t) :: itemsize = 0
    integer :: dims(2) = 1
    logical :: row_major = .false.
    character(len=:), allocatable :: why  !< the reason view_open failed
  end type array_view

  interface
    function c_json_get(json, pointer, out) bind(C, name="academy_json_get") result(status)
      import :: c_ptr, c_int, c_char
      character(kind=c_char), intent(in) :: json(*), pointer(*)
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_json_get

    function c_ndarray_read(json, pointer, out) bind(C, name="academy_ndarray_read") result(status)
      import :: c_ptr, c_int, c_char
      character(kind=c_char), intent(in) :: json(*), pointer(*)
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_ndarray_read

    subroutine c_ndarray_free(array) bind(C, name="academy_ndarray_free")
      import :: c_ptr
      type(c_ptr), value :: array
    end subroutine c_ndarray_free

    function c_ndarray_write(dtype, ndim, shape, order, data, out) bind(C, name="academy_ndarray_write") &
        result(status)
      import :: c_ptr, c_int, c_char, c_size_t
      character(kind=c_char), intent(in) :: dtype(*)
      integer(c_size_t), value :: ndim
      integer(c_size_t), intent(in) :: shape(*)
      character(kind=c_char), value :: order
      type(c_ptr), value :: data
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_ndarray_write

    function c_bytes_read(json, pointer, out_data, out_len) bind(C, name="academy_bytes_read") result(status)
      import :: c_ptr, c_int, c_char, c_size_t
      character(kind=c_char), intent(in) :: json(*), pointer(*)
      type(c_ptr), intent(out) :: out_data
      integer(c_size_t), intent(out) :: out_len
      integer(c_int) :: status
    end function c_bytes_read

    subroutine c_bytes_free(data, len) bind(C, name="academy_bytes_free")
      import :: c_ptr, c_size_t
      type(c_ptr), value :: data
      integer(c_size_t), value :: len
    end subroutine c_bytes_free

    function c_bytes_write(data, len, out) bind(C, name="academy_bytes_write") result(status)
      import :: c_ptr, c_int, c_size_t
      type(c_ptr), value :: data
      integer(c_size_t), value :: len
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_bytes_write
  end interface

  ! =====================================================================
  ! COMPLETION QUEUE (DESIGN.md section 2b).
  !
  ! The interface blocks are here; the wrapper bodies are in the submodule
  ! fortran/academy_queue.f90: a program that calls one of the wrappers
  ! links fortran/academy_queue.o beside academy.o
  ! (examples-fortran/queue_calls.f90 does).
  ! =====================================================================

  integer(c_int), parameter, public :: ACADEMY_EVENT_CALL = 1     !< an _async request, action or ping ended
  integer(c_int), parameter, public :: ACADEMY_EVENT_MESSAGE = 2  !< a message for a client given to academy_client_listen
  integer(c_int), parameter, public :: ACADEMY_EVENT_REQUEST = 3  !< an action request for academy_agent_serve_queue
  integer(c_int), parameter, public :: ACADEMY_EVENT_ENDED = 4    !< a listen or a serving from a queue ended (status: why)

  !> A completion queue (academy_queue).
  type, public :: academy_queue
    type(c_ptr) :: ptr = c_null_ptr
  end type academy_queue

  !> The C layout of academy_event (read-only; the library allocates it).
  !> token is a uint64_t in C.
  type, bind(C), public :: academy_event_c
    integer(c_int) :: kind
    integer(c_int64_t) :: token
    integer(c_int) :: status
    type(c_ptr) :: json
    type(c_ptr) :: error
    real(c_double) :: rtt_s
    type(c_ptr) :: action
    type(c_ptr) :: args_json
    type(c_ptr) :: kwargs_json
    type(c_ptr) :: reply
  end type academy_event_c

  !> An event as academy_queue_poll gives it to Fortran: the strings
  !> copied (unallocated where C has NULL), the C event already freed.
  !> reply (REQUEST events) is completed with academy_reply_ok or
  !> academy_reply_error, then or later: DESIGN.md 2b lets a program
  !> complete it after freeing the event.
  type, public :: academy_event
    integer(c_int) :: kind = 0
    integer(c_int64_t) :: token = 0
    integer(c_int) :: status = ACADEMY_OK
    character(len=:), allocatable :: json
    character(len=:), allocatable :: error
    real(c_double) :: rtt_s = 0
    character(len=:), allocatable :: action
    character(len=:), allocatable :: args_json
    character(len=:), allocatable :: kwargs_json
    type(c_ptr) :: reply = c_null_ptr
  end type academy_event

  public :: academy_queue_new, academy_queue_free, academy_queue_fd, academy_queue_poll
  public :: academy_client_request_async, academy_client_action_async, academy_client_ping_async
  public :: academy_client_listen, academy_agent_serve_queue

  interface
    function c_queue_new(out) bind(C, name="academy_queue_new") result(status)
      import :: c_ptr, c_int
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_queue_new

    subroutine c_queue_free(queue) bind(C, name="academy_queue_free")
      import :: c_ptr
      type(c_ptr), value :: queue
    end subroutine c_queue_free

    function c_queue_fd(queue, out) bind(C, name="academy_queue_fd") result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: queue
      integer(c_int), intent(out) :: out
      integer(c_int) :: status
    end function c_queue_fd

    function c_queue_poll(queue, timeout_s, out) bind(C, name="academy_queue_poll") result(status)
      import :: c_ptr, c_int, c_double
      type(c_ptr), value :: queue
      real(c_double), value :: timeout_s
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function c_queue_poll

    subroutine c_event_free(event) bind(C, name="academy_event_free")
      import :: c_ptr
      type(c_ptr), value :: event
    end subroutine c_event_free

    function c_client_request_async(client, dest_json, body_json, timeout_s, queue, token) &
        bind(C, name="academy_client_request_async") result(status)
      import :: c_ptr, c_int, c_char, c_double, c_int64_t
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: dest_json(*), body_json(*)
      real(c_double), value :: timeout_s
      type(c_ptr), value :: queue
      integer(c_int64_t), value :: token
      integer(c_int) :: status
    end function c_client_request_async

    function c_client_action_async(client, agent_id_json, action, args_json, kwargs_json, timeout_s, queue, token) &
        bind(C, name="academy_client_action_async") result(status)
      import :: c_ptr, c_int, c_char, c_double, c_int64_t
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: agent_id_json(*), action(*)
      type(c_ptr), value :: args_json, kwargs_json
      real(c_double), value :: timeout_s
      type(c_ptr), value :: queue
      integer(c_int64_t), value :: token
      integer(c_int) :: status
    end function c_client_action_async

    function c_client_ping_async(client, agent_id_json, timeout_s, queue, token) &
        bind(C, name="academy_client_ping_async") result(status)
      import :: c_ptr, c_int, c_char, c_double, c_int64_t
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: agent_id_json(*)
      real(c_double), value :: timeout_s
      type(c_ptr), value :: queue
      integer(c_int64_t), value :: token
      integer(c_int) :: status
    end function c_client_ping_async

    function c_client_listen(client, queue, token) bind(C, name="academy_client_listen") result(status)
      import :: c_ptr, c_int, c_int64_t
      type(c_ptr), value :: client, queue
      integer(c_int64_t), value :: token
      integer(c_int) :: status
    end function c_client_listen

    function c_agent_serve_queue(client, queue, token) bind(C, name="academy_agent_serve_queue") result(status)
      import :: c_ptr, c_int, c_int64_t
      type(c_ptr), value :: client, queue
      integer(c_int64_t), value :: token
      integer(c_int) :: status
    end function c_agent_serve_queue
  end interface

  ! The wrappers' interfaces; their bodies are in fortran/academy_queue.f90.
  interface
    !> Makes a completion queue.
    module function academy_queue_new(queue) result(status)
      type(academy_queue), intent(out) :: queue
      integer(c_int) :: status
    end function academy_queue_new

    !> Frees a queue and the events still in it.
    module subroutine academy_queue_free(queue)
      type(academy_queue), intent(inout) :: queue
    end subroutine academy_queue_free

    !> The queue's file descriptor, readable while the queue has events
    !> (never read or close it).
    module function academy_queue_fd(queue, fd) result(status)
      type(academy_queue), intent(in) :: queue
      integer(c_int), intent(out) :: fd
      integer(c_int) :: status
    end function academy_queue_fd

    !> Takes the next event, waiting up to timeout_s (0: do not wait);
    !> ACADEMY_ERR_TIMEOUT when none came.
    module function academy_queue_poll(queue, timeout_s, event) result(status)
      type(academy_queue), intent(in) :: queue
      real(c_double), intent(in) :: timeout_s
      type(academy_event), intent(out) :: event
      integer(c_int) :: status
    end function academy_queue_poll

    !> Starts a request; its CALL event carries the response message.
    module function academy_client_request_async(client, dest_json, body_json, timeout_s, queue, token) result(status)
      type(academy_client), intent(in) :: client
      character(len=*), intent(in) :: dest_json, body_json
      real(c_double), intent(in) :: timeout_s
      type(academy_queue), intent(in) :: queue
      integer(c_int64_t), intent(in) :: token
      integer(c_int) :: status
    end function academy_client_request_async

    !> Starts an action call; its CALL event carries the result JSON.
    module function academy_client_action_async(client, agent_id_json, action, timeout_s, queue, token, &
        args_json, kwargs_json) result(status)
      type(academy_client), intent(in) :: client
      character(len=*), intent(in) :: agent_id_json, action
      real(c_double), intent(in) :: timeout_s
      type(academy_queue), intent(in) :: queue
      integer(c_int64_t), intent(in) :: token
      character(len=*), intent(in), optional :: args_json, kwargs_json
      integer(c_int) :: status
    end function academy_client_action_async

    !> Starts a ping; its CALL event carries rtt_s.
    module function academy_client_ping_async(client, agent_id_json, timeout_s, queue, token) result(status)
      type(academy_client), intent(in) :: client
      character(len=*), intent(in) :: agent_id_json
      real(c_double), intent(in) :: timeout_s
      type(academy_queue), intent(in) :: queue
      integer(c_int64_t), intent(in) :: token
      integer(c_int) :: status
    end function academy_client_ping_async

    !> Routes the client's messages that no call waits for to the queue
    !> (MESSAGE events).
    module function academy_client_listen(client, queue, token) result(status)
      type(academy_client), intent(in) :: client
      type(academy_queue), intent(in) :: queue
      integer(c_int64_t), intent(in) :: token
      integer(c_int) :: status
    end function academy_client_listen

    !> Serves the agent from the queue (REQUEST events); returns at once,
    !> academy_agent_stop ends it.
    module function academy_agent_serve_queue(client, queue, token) result(status)
      type(academy_client), intent(in) :: client
      type(academy_queue), intent(in) :: queue
      integer(c_int64_t), intent(in) :: token
      integer(c_int) :: status
    end function academy_agent_serve_queue
  end interface

contains

  ! ---- strings ----

  !> A NUL-terminated copy of s without its trailing blanks, for C.
  pure function c_str(s) result(buf)
    character(len=*), intent(in) :: s
    character(kind=c_char) :: buf(len_trim(s) + 1)
    integer :: i
    do i = 1, len_trim(s)
      buf(i) = s(i:i)
    end do
    buf(size(buf)) = c_null_char
  end function c_str

  !> A pointer to a C copy of s kept in buf, or NULL when s is absent.
  function optional_c_str(s, buf) result(p)
    character(len=*), intent(in), optional :: s
    character(kind=c_char), allocatable, target, intent(out) :: buf(:)
    type(c_ptr) :: p
    p = c_null_ptr
    if (present(s)) then
      buf = c_str(s)
      p = c_loc(buf)
    end if
  end function optional_c_str

  !> A Fortran copy of the C string p (which stays the caller's); "" for NULL.
  function academy_c_string(p) result(s)
    type(c_ptr), intent(in) :: p
    character(len=:), allocatable :: s
    character(kind=c_char), pointer :: chars(:)
    integer :: i, n
    if (.not. c_associated(p)) then
      s = ''
      return
    end if
    n = int(strlen(p))
    call c_f_pointer(p, chars, [n])
    allocate (character(len=n) :: s)
    do i = 1, n
      s(i:i) = chars(i)
    end do
  end function academy_c_string

  !> A Fortran copy of a string the library returned, which is then freed.
  function take_string(p) result(s)
    type(c_ptr), intent(in) :: p
    character(len=:), allocatable :: s
    s = academy_c_string(p)
    call c_string_free(p)
  end function take_string

  ! ---- basics ----

  !> The library's version, e.g. "0.1.0".
  function academy_version() result(s)
    character(len=:), allocatable :: s
    s = academy_c_string(c_version())
  end function academy_version

  !> A short text of a status code, e.g. "timeout".
  function academy_status_str(status) result(s)
    integer(c_int), intent(in) :: status
    character(len=:), allocatable :: s
    s = academy_c_string(c_status_str(status))
  end function academy_status_str

  !> The name of a status code as in academy.h, e.g. "ACADEMY_ERR_TIMEOUT".
  function academy_status_name(status) result(s)
    integer(c_int), intent(in) :: status
    character(len=:), allocatable :: s
    s = academy_c_string(c_status_name(status))
  end function academy_status_name

  !> Routes the library's log lines at level (an ACADEMY_LOG_ value) or
  !> more severe to callback(user_data, level, target, message), replacing
  !> the callback set before; without callback, or with ACADEMY_LOG_OFF,
  !> it stops. The callback runs on library threads: see academy_log_fn.
  !> user_data (default NULL) is passed untouched and must stay valid
  !> until the callback is replaced.
  function academy_set_log_callback(level, callback, user_data) result(status)
    integer(c_int), intent(in) :: level
    procedure(academy_log_fn), optional :: callback
    type(c_ptr), intent(in), optional :: user_data
    integer(c_int) :: status
    type(c_funptr) :: fn
    type(c_ptr) :: data
    fn = c_null_funptr
    data = c_null_ptr
    if (present(callback)) fn = c_funloc(callback)
    if (present(user_data)) data = user_data
    status = c_set_log_callback(fn, data, level)
  end function academy_set_log_callback

  !> The detail of this thread's last failed call ("" after a success).
  function academy_last_error() result(s)
    character(len=:), allocatable :: s
    s = academy_c_string(c_last_error())
  end function academy_last_error

  ! ---- factory ----

  !> A factory for the HTTP exchange at url; options_json as in C.
  function academy_http_factory_new(url, factory, options_json) result(status)
    character(len=*), intent(in) :: url
    type(academy_factory), intent(out) :: factory
    character(len=*), intent(in), optional :: options_json
    integer(c_int) :: status
    character(kind=c_char), allocatable, target :: options_buf(:)
    type(c_ptr) :: out
    status = c_http_factory_new(c_str(url), optional_c_str(options_json, options_buf), out)
    if (status == ACADEMY_OK) factory%ptr = out
  end function academy_http_factory_new

  !> A factory for academy-py's Redis exchange (options_json as in C:
  !> hostname, port, kwargs and the common client options).
  function academy_redis_factory_new(factory, options_json) result(status)
    type(academy_factory), intent(out) :: factory
    character(len=*), intent(in), optional :: options_json
    integer(c_int) :: status
    character(kind=c_char), allocatable, target :: options_buf(:)
    type(c_ptr) :: out
    status = c_redis_factory_new(optional_c_str(options_json, options_buf), out)
    if (status == ACADEMY_OK) factory%ptr = out
  end function academy_redis_factory_new

  !> A factory for academy-py's hybrid exchange (options_json as in C:
  !> redis_host, redis_port, redis_kwargs, interface, namespace, ports and
  !> the common client options).
  function academy_hybrid_factory_new(factory, options_json) result(status)
    type(academy_factory), intent(out) :: factory
    character(len=*), intent(in), optional :: options_json
    integer(c_int) :: status
    character(kind=c_char), allocatable, target :: options_buf(:)
    type(c_ptr) :: out
    status = c_hybrid_factory_new(optional_c_str(options_json, options_buf), out)
    if (status == ACADEMY_OK) factory%ptr = out
  end function academy_hybrid_factory_new

  subroutine academy_factory_free(factory)
    type(academy_factory), intent(inout) :: factory
    call c_factory_free(factory%ptr)
    factory%ptr = c_null_ptr
  end subroutine academy_factory_free

  ! ---- clients ----

  !> Registers a user mailbox and makes its client.
  function academy_user_client_new(factory, client, name) result(status)
    type(academy_factory), intent(in) :: factory
    type(academy_client), intent(out) :: client
    character(len=*), intent(in), optional :: name
    integer(c_int) :: status
    character(kind=c_char), allocatable, target :: name_buf(:)
    type(c_ptr) :: out
    status = c_user_client_new(factory%ptr, optional_c_str(name, name_buf), out)
    if (status == ACADEMY_OK) client%ptr = out
  end function academy_user_client_new

  !> Registers an agent mailbox; registration gets its registration JSON.
  function academy_client_register_agent(client, agent_types, registration, name) result(status)
    type(academy_client), intent(in) :: client
    character(len=*), intent(in) :: agent_types
    character(len=:), allocatable, intent(out) :: registration
    character(len=*), intent(in), optional :: name
    integer(c_int) :: status
    character(kind=c_char), allocatable, target :: name_buf(:)
    type(c_ptr) :: out
    status = c_client_register_agent(client%ptr, c_str(agent_types), optional_c_str(name, name_buf), out)
    if (status == ACADEMY_OK) registration = take_string(out)
  end function academy_client_register_agent

  !> The client of an agent registered before.
  function academy_agent_client_new(factory, registration_json, client) result(status)
    type(academy_factory), intent(in) :: factory
    character(len=*), intent(in) :: registration_json
    type(academy_client), intent(out) :: client
    integer(c_int) :: status
    type(c_ptr) :: out
    status = c_agent_client_new(factory%ptr, c_str(registration_json), out)
    if (status == ACADEMY_OK) client%ptr = out
  end function academy_agent_client_new

  function academy_client_mailbox_id(client, id_json) result(status)
    type(academy_client), intent(in) :: client
    character(len=:), allocatable, intent(out) :: id_json
    integer(c_int) :: status
    type(c_ptr) :: out
    status = c_client_mailbox_id(client%ptr, out)
    if (status == ACADEMY_OK) id_json = take_string(out)
  end function academy_client_mailbox_id

  function academy_client_send(client, message_json) result(status)
    type(academy_client), intent(in) :: client
    character(len=*), intent(in) :: message_json
    integer(c_int) :: status
    status = c_client_send(client%ptr, c_str(message_json))
  end function academy_client_send

  !> Starts a send and returns; done (a bind(C) procedure, optional) is
  !> called once on a library thread with user_data and the outcome.
  function academy_client_send_async(client, message_json, done, user_data) result(status)
    type(academy_client), intent(in) :: client
    character(len=*), intent(in) :: message_json
    procedure(academy_send_done_fn), optional :: done
    type(c_ptr), intent(in), optional :: user_data
    integer(c_int) :: status
    type(c_funptr) :: fn
    type(c_ptr) :: data
    fn = c_null_funptr
    if (present(done)) fn = c_funloc(done)
    data = c_null_ptr
    if (present(user_data)) data = user_data
    status = c_client_send_async(client%ptr, c_str(message_json), fn, data)
  end function academy_client_send_async

  function academy_client_flush(client, timeout_s) result(status)
    type(academy_client), intent(in) :: client
    real(c_double), intent(in) :: timeout_s
    integer(c_int) :: status
    status = c_client_flush(client%ptr, timeout_s)
  end function academy_client_flush

  function academy_client_recv(client, timeout_s, message_json) result(status)
    type(academy_client), intent(in) :: client
    real(c_double), intent(in) :: timeout_s
    character(len=:), allocatable, intent(out) :: message_json
    integer(c_int) :: status
    type(c_ptr) :: out
    status = c_client_recv(client%ptr, timeout_s, out)
    if (status == ACADEMY_OK) message_json = take_string(out)
  end function academy_client_recv

  !> mailbox_status gets one of the ACADEMY_MAILBOX_* values.
  function academy_client_status(client, id_json, mailbox_status) result(status)
    type(academy_client), intent(in) :: client
    character(len=*), intent(in) :: id_json
    integer(c_int), intent(out) :: mailbox_status
    integer(c_int) :: status
    integer(c_int) :: out
    status = c_client_status(client%ptr, c_str(id_json), out)
    if (status == ACADEMY_OK) mailbox_status = out
  end function academy_client_status

  function academy_client_terminate(client, id_json) result(status)
    type(academy_client), intent(in) :: client
    character(len=*), intent(in) :: id_json
    integer(c_int) :: status
    status = c_client_terminate(client%ptr, c_str(id_json))
  end function academy_client_terminate

  !> ids_json gets a JSON array of the agent ids found.
  function academy_client_discover(client, agent_type, allow_subclasses, ids_json) result(status)
    type(academy_client), intent(in) :: client
    character(len=*), intent(in) :: agent_type
    logical, intent(in) :: allow_subclasses
    character(len=:), allocatable, intent(out) :: ids_json
    integer(c_int) :: status
    type(c_ptr) :: out
    status = c_client_discover(client%ptr, c_str(agent_type), logical(allow_subclasses, c_bool), out)
    if (status == ACADEMY_OK) ids_json = take_string(out)
  end function academy_client_discover

  function academy_client_heartbeat(client) result(status)
    type(academy_client), intent(in) :: client
    integer(c_int) :: status
    status = c_client_heartbeat(client%ptr)
  end function academy_client_heartbeat

  function academy_client_heartbeat_status(client, id_json, age_s) result(status)
    type(academy_client), intent(in) :: client
    character(len=*), intent(in) :: id_json
    real(c_double), intent(out) :: age_s
    integer(c_int) :: status
    real(c_double) :: out
    status = c_client_heartbeat_status(client%ptr, c_str(id_json), out)
    if (status == ACADEMY_OK) age_s = out
  end function academy_client_heartbeat_status

  function academy_client_agent_stats(client, id_json, stats_json) result(status)
    type(academy_client), intent(in) :: client
    character(len=*), intent(in) :: id_json
    character(len=:), allocatable, intent(out) :: stats_json
    integer(c_int) :: status
    type(c_ptr) :: out
    status = c_client_agent_stats(client%ptr, c_str(id_json), out)
    if (status == ACADEMY_OK) stats_json = take_string(out)
  end function academy_client_agent_stats

  function academy_client_share_mailbox(client, id_json, group_id) result(status)
    type(academy_client), intent(in) :: client
    character(len=*), intent(in) :: id_json, group_id
    integer(c_int) :: status
    status = c_client_share_mailbox(client%ptr, c_str(id_json), c_str(group_id))
  end function academy_client_share_mailbox

  function academy_client_shared_groups(client, id_json, group_ids_json) result(status)
    type(academy_client), intent(in) :: client
    character(len=*), intent(in) :: id_json
    character(len=:), allocatable, intent(out) :: group_ids_json
    integer(c_int) :: status
    type(c_ptr) :: out
    status = c_client_shared_groups(client%ptr, c_str(id_json), out)
    if (status == ACADEMY_OK) group_ids_json = take_string(out)
  end function academy_client_shared_groups

  function academy_client_unshare_mailbox(client, id_json, group_id) result(status)
    type(academy_client), intent(in) :: client
    character(len=*), intent(in) :: id_json, group_id
    integer(c_int) :: status
    status = c_client_unshare_mailbox(client%ptr, c_str(id_json), c_str(group_id))
  end function academy_client_unshare_mailbox

  function academy_client_close(client) result(status)
    type(academy_client), intent(in) :: client
    integer(c_int) :: status
    status = c_client_close(client%ptr)
  end function academy_client_close

  subroutine academy_client_free(client)
    type(academy_client), intent(inout) :: client
    call c_client_free(client%ptr)
    client%ptr = c_null_ptr
  end subroutine academy_client_free

  ! ---- calls ----

  !> Sends a request body to dest_json; response_json gets the response message.
  function academy_client_request(client, dest_json, body_json, timeout_s, response_json) result(status)
    type(academy_client), intent(in) :: client
    character(len=*), intent(in) :: dest_json, body_json
    real(c_double), intent(in) :: timeout_s
    character(len=:), allocatable, intent(out) :: response_json
    integer(c_int) :: status
    type(c_ptr) :: out
    status = c_client_request(client%ptr, c_str(dest_json), c_str(body_json), timeout_s, out)
    if (status == ACADEMY_OK) response_json = take_string(out)
  end function academy_client_request

  !> Calls an action of an agent; result_json gets its result as JSON.
  !> ACADEMY_ERR_REMOTE when the action raised (the traceback is in
  !> academy_last_error()).
  function academy_client_action(client, agent_id_json, action, timeout_s, result_json, args_json, kwargs_json) &
      result(status)
    type(academy_client), intent(in) :: client
    character(len=*), intent(in) :: agent_id_json, action
    real(c_double), intent(in) :: timeout_s
    character(len=:), allocatable, intent(out) :: result_json
    character(len=*), intent(in), optional :: args_json, kwargs_json
    integer(c_int) :: status
    character(kind=c_char), allocatable, target :: args_buf(:), kwargs_buf(:)
    type(c_ptr) :: out
    status = c_client_action(client%ptr, c_str(agent_id_json), c_str(action), &
                             optional_c_str(args_json, args_buf), optional_c_str(kwargs_json, kwargs_buf), &
                             timeout_s, out)
    if (status == ACADEMY_OK) result_json = take_string(out)
  end function academy_client_action

  function academy_client_ping(client, agent_id_json, timeout_s, rtt_s) result(status)
    type(academy_client), intent(in) :: client
    character(len=*), intent(in) :: agent_id_json
    real(c_double), intent(in) :: timeout_s
    real(c_double), intent(out) :: rtt_s
    integer(c_int) :: status
    real(c_double) :: out
    status = c_client_ping(client%ptr, c_str(agent_id_json), timeout_s, out)
    if (status == ACADEMY_OK) rtt_s = out
  end function academy_client_ping

  !> Asks an agent to shut down; terminate: -1 (the default) lets the
  !> agent decide, 0 keeps its mailbox, 1 terminates it.
  function academy_client_shutdown_agent(client, agent_id_json, terminate) result(status)
    type(academy_client), intent(in) :: client
    character(len=*), intent(in) :: agent_id_json
    integer, intent(in), optional :: terminate
    integer(c_int) :: status
    integer(c_int) :: t
    t = -1
    if (present(terminate)) t = int(terminate, c_int)
    status = c_client_shutdown_agent(client%ptr, c_str(agent_id_json), t)
  end function academy_client_shutdown_agent

  ! ---- serving ----

  !> Serves the agent of client until it is shut down or stopped, calling
  !> handler (a bind(C) procedure with the academy_action_fn interface)
  !> for each action request, on library threads.
  function academy_agent_serve(client, handler, user_data) result(status)
    type(academy_client), intent(in) :: client
    procedure(academy_action_fn) :: handler
    type(c_ptr), intent(in), optional :: user_data
    integer(c_int) :: status
    type(c_ptr) :: data
    data = c_null_ptr
    if (present(user_data)) data = user_data
    status = c_agent_serve(client%ptr, c_funloc(handler), data)
  end function academy_agent_serve

  function academy_agent_stop(client) result(status)
    type(academy_client), intent(in) :: client
    integer(c_int) :: status
    status = c_agent_stop(client%ptr)
  end function academy_agent_stop

  !> Completes reply (the handler's reply argument) with a JSON result.
  function academy_reply_ok(reply, result_json) result(status)
    type(c_ptr), intent(in) :: reply
    character(len=*), intent(in) :: result_json
    integer(c_int) :: status
    status = c_reply_ok(reply, c_str(result_json))
  end function academy_reply_ok

  !> Completes reply with an error; a Python caller raises AcademyRemoteError(message).
  function academy_reply_error(reply, message) result(status)
    type(c_ptr), intent(in) :: reply
    character(len=*), intent(in) :: message
    integer(c_int) :: status
    status = c_reply_error(reply, c_str(message))
  end function academy_reply_error

  !> Sets cancelled to whether the request of reply was answered without
  !> it: its caller cancelled it, serving ended, or its mailbox was
  !> terminated. A long handler may ask now and then and stop early; it
  !> still completes the reply (which then answers ACADEMY_ERR_CLOSED).
  !> ACADEMY_ERR_CLOSED if reply was completed already.
  function academy_reply_cancelled(reply, cancelled) result(status)
    type(c_ptr), intent(in) :: reply
    logical, intent(out) :: cancelled
    integer(c_int) :: status
    logical(c_bool) :: answered
    answered = .false.
    status = c_reply_cancelled(reply, answered)
    cancelled = answered
  end function academy_reply_cancelled

  ! ---- messages (no network) ----

  function academy_message_new(src_json, dest_json, body_json, message_json) result(status)
    character(len=*), intent(in) :: src_json, dest_json, body_json
    character(len=:), allocatable, intent(out) :: message_json
    integer(c_int) :: status
    type(c_ptr) :: out
    status = c_message_new(c_str(src_json), c_str(dest_json), c_str(body_json), out)
    if (status == ACADEMY_OK) message_json = take_string(out)
  end function academy_message_new

  function academy_message_response(request_json, body_json, message_json) result(status)
    character(len=*), intent(in) :: request_json, body_json
    character(len=:), allocatable, intent(out) :: message_json
    integer(c_int) :: status
    type(c_ptr) :: out
    status = c_message_response(c_str(request_json), c_str(body_json), out)
    if (status == ACADEMY_OK) message_json = take_string(out)
  end function academy_message_response

  !> The body of an action request (send it with academy_client_request).
  !> serialization (optional): how the arguments are written, "auto" (the
  !> default: JSON unless they hold a py/ form, then pickle), "json" or
  !> "pickle" (academy_action_request_body_as).
  function academy_action_request_body(action, body_json, args_json, kwargs_json, serialization) result(status)
    character(len=*), intent(in) :: action
    character(len=:), allocatable, intent(out) :: body_json
    character(len=*), intent(in), optional :: args_json, kwargs_json, serialization
    integer(c_int) :: status
    character(kind=c_char), allocatable, target :: args_buf(:), kwargs_buf(:), serialization_buf(:)
    type(c_ptr) :: out
    status = c_action_request_body_as(c_str(action), optional_c_str(args_json, args_buf), &
                                      optional_c_str(kwargs_json, kwargs_buf), &
                                      optional_c_str(serialization, serialization_buf), out)
    if (status == ACADEMY_OK) body_json = take_string(out)
  end function academy_action_request_body

  function academy_message_result(response_json, result_json) result(status)
    character(len=*), intent(in) :: response_json
    character(len=:), allocatable, intent(out) :: result_json
    integer(c_int) :: status
    type(c_ptr) :: out
    status = c_message_result(c_str(response_json), out)
    if (status == ACADEMY_OK) result_json = take_string(out)
  end function academy_message_result

  function academy_user_id_new(id_json, name) result(status)
    character(len=:), allocatable, intent(out) :: id_json
    character(len=*), intent(in), optional :: name
    integer(c_int) :: status
    character(kind=c_char), allocatable, target :: name_buf(:)
    type(c_ptr) :: out
    status = c_user_id_new(optional_c_str(name, name_buf), out)
    if (status == ACADEMY_OK) id_json = take_string(out)
  end function academy_user_id_new

  function academy_agent_id_new(id_json, name) result(status)
    character(len=:), allocatable, intent(out) :: id_json
    character(len=*), intent(in), optional :: name
    integer(c_int) :: status
    character(kind=c_char), allocatable, target :: name_buf(:)
    type(c_ptr) :: out
    status = c_agent_id_new(optional_c_str(name, name_buf), out)
    if (status == ACADEMY_OK) id_json = take_string(out)
  end function academy_agent_id_new

  ! ---- embedded exchange ----

  !> Starts an exchange server in this process (options_json as in C).
  function academy_exchange_spawn(exchange, options_json) result(status)
    type(academy_exchange), intent(out) :: exchange
    character(len=*), intent(in), optional :: options_json
    integer(c_int) :: status
    character(kind=c_char), allocatable, target :: options_buf(:)
    type(c_ptr) :: out
    status = c_exchange_spawn(optional_c_str(options_json, options_buf), out)
    if (status == ACADEMY_OK) exchange%ptr = out
  end function academy_exchange_spawn

  function academy_exchange_url(exchange, url) result(status)
    type(academy_exchange), intent(in) :: exchange
    character(len=:), allocatable, intent(out) :: url
    integer(c_int) :: status
    type(c_ptr) :: out
    status = c_exchange_url(exchange%ptr, out)
    if (status == ACADEMY_OK) url = take_string(out)
  end function academy_exchange_url

  function academy_exchange_stop(exchange) result(status)
    type(academy_exchange), intent(in) :: exchange
    integer(c_int) :: status
    status = c_exchange_stop(exchange%ptr)
  end function academy_exchange_stop

  subroutine academy_exchange_free(exchange)
    type(academy_exchange), intent(inout) :: exchange
    call c_exchange_free(exchange%ptr)
    exchange%ptr = c_null_ptr
  end subroutine academy_exchange_free

  ! ---- Python values ----

  !> Finds the value at pointer (an RFC 6901 JSON pointer: '' for the
  !> whole, '/0' for the first item of an array, '/a/b' for key b of key a)
  !> in json; value_json gets it as JSON text. ACADEMY_ERR_INVALID_ARGUMENT
  !> for malformed JSON or pointer, or nothing at pointer.
  function academy_json_get(json, pointer, value_json) result(status)
    character(len=*), intent(in) :: json, pointer
    character(len=:), allocatable, intent(out) :: value_json
    integer(c_int) :: status
    type(c_ptr) :: out
    status = c_json_get(c_str(json), c_str(pointer), out)
    if (status == ACADEMY_OK) value_json = take_string(out)
  end function academy_json_get

  !> A C copy of an optional JSON pointer ('' when absent: the whole text).
  pure function c_pointer_str(pointer) result(buf)
    character(len=*), intent(in), optional :: pointer
    character(kind=c_char), allocatable :: buf(:)
    if (present(pointer)) then
      buf = c_str(pointer)
    else
      buf = [c_null_char]
    end if
  end function c_pointer_str

  !> numpy's name of a dtype of kind and itemsize ("float64", "bool").
  function dtype_name(kind, itemsize) result(name)
    character, intent(in) :: kind
    integer(c_size_t), intent(in) :: itemsize
    character(len=:), allocatable :: name
    character(len=24) :: bits
    write (bits, '(i0)') 8 * itemsize
    select case (kind)
    case ('b')
      name = 'bool'
    case ('i')
      name = 'int' // trim(bits)
    case ('u')
      name = 'uint' // trim(bits)
    case ('f')
      name = 'float' // trim(bits)
    case default
      name = 'complex' // trim(bits)
    end select
  end function dtype_name

  !> Reads the array at pointer in json with the library and checks that
  !> it has the dtype (kind, itemsize) and rank of the Fortran array it is
  !> read into; on success view holds it, to copy out and close, else
  !> view%why says why. (The callers copy why to their errmsg: gfortran 12
  !> loses the length of an optional deferred-length string passed on to
  !> another optional one.)
  function view_open(view, json, pointer, kind, itemsize, rank) result(status)
    type(array_view), intent(out) :: view
    character(len=*), intent(in) :: json
    character(len=*), intent(in), optional :: pointer
    character, intent(in) :: kind
    integer(c_size_t), intent(in) :: itemsize
    integer, intent(in) :: rank
    integer(c_int) :: status
    type(c_ndarray), pointer :: array
    integer(c_size_t), pointer :: shape(:)
    character(len=:), allocatable :: why
    character(len=80) :: text
    status = c_ndarray_read(c_str(json), c_pointer_str(pointer), view%array)
    if (status /= ACADEMY_OK) then
      view%why = academy_last_error()
      return
    end if
    call c_f_pointer(view%array, array)
    why = ''
    if (array%kind /= kind .or. array%itemsize /= itemsize) then
      why = 'the array''s dtype is ' // academy_c_string(array%dtype) // ', not ' // dtype_name(kind, itemsize)
    else if (array%ndim /= int(rank, c_size_t)) then
      write (text, '(a, i0, a, i0, a)') 'the array is ', array%ndim, '-dimensional, not ', rank, '-dimensional'
      why = trim(text)
    else
      call c_f_pointer(array%shape, shape, [rank])
      if (any(shape > int(huge(0), c_size_t))) why = 'the array is too large for default integer extents'
      if (len(why) == 0) view%dims(1:rank) = int(shape)
    end if
    if (len(why) > 0) then
      call c_ndarray_free(view%array)
      view%array = c_null_ptr
      status = ACADEMY_ERR_INVALID_ARGUMENT
      view%why = why
      return
    end if
    view%data = array%data
    view%itemsize = array%itemsize
    view%row_major = array%order == 'C' .and. rank == 2
  end function view_open

  !> Copies the elements of view to the Fortran array at `to` (of view's
  !> extents, not empty), so that numpy's [i, j] is (i+1, j+1); then
  !> frees the library's array.
  subroutine view_copy(view, to)
    type(array_view), intent(inout) :: view
    type(c_ptr), intent(in) :: to
    integer(c_int8_t), pointer :: src(:, :, :), dst(:, :, :)
    integer :: i, j, size, m, n
    size = int(view%itemsize)
    m = view%dims(1)
    n = view%dims(2)
    call c_f_pointer(to, dst, [size, m, n])
    if (view%row_major) then
      ! numpy's [i, j] is element j + n*i of the data: a transposed copy.
      call c_f_pointer(view%data, src, [size, n, m])
      do j = 1, n
        do i = 1, m
          dst(:, i, j) = src(:, j, i)
        end do
      end do
    else
      call c_f_pointer(view%data, src, [size, m, n])
      dst = src
    end if
  end subroutine view_copy

  subroutine view_close(view)
    type(array_view), intent(inout) :: view
    call c_ndarray_free(view%array)
    view%array = c_null_ptr
  end subroutine view_close

  !> Bytes that are not 0 or 1 are no logical(c_bool): make them 1.
  subroutine normalize_bools(at, n)
    type(c_ptr), intent(in) :: at
    integer, intent(in) :: n
    integer(c_int8_t), pointer :: raw(:)
    call c_f_pointer(at, raw, [n])
    where (raw /= 0) raw = 1
  end subroutine normalize_bools

  !> The JSON form of the column-major array of dtype with shape at data
  !> (NULL when it has no elements).
  function write_array(dtype, shape, data, json) result(status)
    character(len=*), intent(in) :: dtype
    integer(c_size_t), intent(in) :: shape(:)
    type(c_ptr), intent(in) :: data
    character(len=:), allocatable, intent(out) :: json
    integer(c_int) :: status
    integer(c_int8_t), target :: none(1)
    type(c_ptr) :: at, out
    at = data
    if (.not. c_associated(at)) at = c_loc(none)
    status = c_ndarray_write(c_str(dtype), size(shape, kind=c_size_t), shape, 'F', at, out)
    if (status == ACADEMY_OK) json = take_string(out)
  end function write_array

  function read_f8_1(json, values, pointer, errmsg) result(status)
    character(len=*), intent(in) :: json
    real(c_double), allocatable, target, intent(out) :: values(:)
    character(len=*), intent(in), optional :: pointer
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer(c_int) :: status
    type(array_view) :: view
    status = view_open(view, json, pointer, 'f', 8_c_size_t, 1)
    if (status == ACADEMY_OK) then
      allocate (values(view%dims(1)))
      if (size(values) > 0) call view_copy(view, c_loc(values))
      call view_close(view)
    else if (present(errmsg)) then
      errmsg = view%why
    end if
  end function read_f8_1

  function read_f8_2(json, values, pointer, errmsg) result(status)
    character(len=*), intent(in) :: json
    real(c_double), allocatable, target, intent(out) :: values(:, :)
    character(len=*), intent(in), optional :: pointer
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer(c_int) :: status
    type(array_view) :: view
    status = view_open(view, json, pointer, 'f', 8_c_size_t, 2)
    if (status == ACADEMY_OK) then
      allocate (values(view%dims(1), view%dims(2)))
      if (size(values) > 0) call view_copy(view, c_loc(values))
      call view_close(view)
    else if (present(errmsg)) then
      errmsg = view%why
    end if
  end function read_f8_2

  function read_f4_1(json, values, pointer, errmsg) result(status)
    character(len=*), intent(in) :: json
    real(c_float), allocatable, target, intent(out) :: values(:)
    character(len=*), intent(in), optional :: pointer
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer(c_int) :: status
    type(array_view) :: view
    status = view_open(view, json, pointer, 'f', 4_c_size_t, 1)
    if (status == ACADEMY_OK) then
      allocate (values(view%dims(1)))
      if (size(values) > 0) call view_copy(view, c_loc(values))
      call view_close(view)
    else if (present(errmsg)) then
      errmsg = view%why
    end if
  end function read_f4_1

  function read_f4_2(json, values, pointer, errmsg) result(status)
    character(len=*), intent(in) :: json
    real(c_float), allocatable, target, intent(out) :: values(:, :)
    character(len=*), intent(in), optional :: pointer
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer(c_int) :: status
    type(array_view) :: view
    status = view_open(view, json, pointer, 'f', 4_c_size_t, 2)
    if (status == ACADEMY_OK) then
      allocate (values(view%dims(1), view%dims(2)))
      if (size(values) > 0) call view_copy(view, c_loc(values))
      call view_close(view)
    else if (present(errmsg)) then
      errmsg = view%why
    end if
  end function read_f4_2

  function read_i4_1(json, values, pointer, errmsg) result(status)
    character(len=*), intent(in) :: json
    integer(c_int32_t), allocatable, target, intent(out) :: values(:)
    character(len=*), intent(in), optional :: pointer
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer(c_int) :: status
    type(array_view) :: view
    status = view_open(view, json, pointer, 'i', 4_c_size_t, 1)
    if (status == ACADEMY_OK) then
      allocate (values(view%dims(1)))
      if (size(values) > 0) call view_copy(view, c_loc(values))
      call view_close(view)
    else if (present(errmsg)) then
      errmsg = view%why
    end if
  end function read_i4_1

  function read_i4_2(json, values, pointer, errmsg) result(status)
    character(len=*), intent(in) :: json
    integer(c_int32_t), allocatable, target, intent(out) :: values(:, :)
    character(len=*), intent(in), optional :: pointer
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer(c_int) :: status
    type(array_view) :: view
    status = view_open(view, json, pointer, 'i', 4_c_size_t, 2)
    if (status == ACADEMY_OK) then
      allocate (values(view%dims(1), view%dims(2)))
      if (size(values) > 0) call view_copy(view, c_loc(values))
      call view_close(view)
    else if (present(errmsg)) then
      errmsg = view%why
    end if
  end function read_i4_2

  function read_i8_1(json, values, pointer, errmsg) result(status)
    character(len=*), intent(in) :: json
    integer(c_int64_t), allocatable, target, intent(out) :: values(:)
    character(len=*), intent(in), optional :: pointer
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer(c_int) :: status
    type(array_view) :: view
    status = view_open(view, json, pointer, 'i', 8_c_size_t, 1)
    if (status == ACADEMY_OK) then
      allocate (values(view%dims(1)))
      if (size(values) > 0) call view_copy(view, c_loc(values))
      call view_close(view)
    else if (present(errmsg)) then
      errmsg = view%why
    end if
  end function read_i8_1

  function read_i8_2(json, values, pointer, errmsg) result(status)
    character(len=*), intent(in) :: json
    integer(c_int64_t), allocatable, target, intent(out) :: values(:, :)
    character(len=*), intent(in), optional :: pointer
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer(c_int) :: status
    type(array_view) :: view
    status = view_open(view, json, pointer, 'i', 8_c_size_t, 2)
    if (status == ACADEMY_OK) then
      allocate (values(view%dims(1), view%dims(2)))
      if (size(values) > 0) call view_copy(view, c_loc(values))
      call view_close(view)
    else if (present(errmsg)) then
      errmsg = view%why
    end if
  end function read_i8_2

  function read_c16_1(json, values, pointer, errmsg) result(status)
    character(len=*), intent(in) :: json
    complex(c_double_complex), allocatable, target, intent(out) :: values(:)
    character(len=*), intent(in), optional :: pointer
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer(c_int) :: status
    type(array_view) :: view
    status = view_open(view, json, pointer, 'c', 16_c_size_t, 1)
    if (status == ACADEMY_OK) then
      allocate (values(view%dims(1)))
      if (size(values) > 0) call view_copy(view, c_loc(values))
      call view_close(view)
    else if (present(errmsg)) then
      errmsg = view%why
    end if
  end function read_c16_1

  function read_c16_2(json, values, pointer, errmsg) result(status)
    character(len=*), intent(in) :: json
    complex(c_double_complex), allocatable, target, intent(out) :: values(:, :)
    character(len=*), intent(in), optional :: pointer
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer(c_int) :: status
    type(array_view) :: view
    status = view_open(view, json, pointer, 'c', 16_c_size_t, 2)
    if (status == ACADEMY_OK) then
      allocate (values(view%dims(1), view%dims(2)))
      if (size(values) > 0) call view_copy(view, c_loc(values))
      call view_close(view)
    else if (present(errmsg)) then
      errmsg = view%why
    end if
  end function read_c16_2

  function read_b1_1(json, values, pointer, errmsg) result(status)
    character(len=*), intent(in) :: json
    logical(c_bool), allocatable, target, intent(out) :: values(:)
    character(len=*), intent(in), optional :: pointer
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer(c_int) :: status
    type(array_view) :: view
    status = view_open(view, json, pointer, 'b', 1_c_size_t, 1)
    if (status == ACADEMY_OK) then
      allocate (values(view%dims(1)))
      if (size(values) > 0) call view_copy(view, c_loc(values))
      call view_close(view)
      if (size(values) > 0) call normalize_bools(c_loc(values), size(values))
    else if (present(errmsg)) then
      errmsg = view%why
    end if
  end function read_b1_1

  function read_b1_2(json, values, pointer, errmsg) result(status)
    character(len=*), intent(in) :: json
    logical(c_bool), allocatable, target, intent(out) :: values(:, :)
    character(len=*), intent(in), optional :: pointer
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer(c_int) :: status
    type(array_view) :: view
    status = view_open(view, json, pointer, 'b', 1_c_size_t, 2)
    if (status == ACADEMY_OK) then
      allocate (values(view%dims(1), view%dims(2)))
      if (size(values) > 0) call view_copy(view, c_loc(values))
      call view_close(view)
      if (size(values) > 0) call normalize_bools(c_loc(values), size(values))
    else if (present(errmsg)) then
      errmsg = view%why
    end if
  end function read_b1_2

  function write_f8_1(values, json) result(status)
    real(c_double), intent(in), target, contiguous :: values(:)
    character(len=:), allocatable, intent(out) :: json
    integer(c_int) :: status
    type(c_ptr) :: data
    data = c_null_ptr
    if (size(values) > 0) data = c_loc(values)
    status = write_array('=f8', shape(values, kind=c_size_t), data, json)
  end function write_f8_1

  function write_f8_2(values, json) result(status)
    real(c_double), intent(in), target, contiguous :: values(:, :)
    character(len=:), allocatable, intent(out) :: json
    integer(c_int) :: status
    type(c_ptr) :: data
    data = c_null_ptr
    if (size(values) > 0) data = c_loc(values)
    status = write_array('=f8', shape(values, kind=c_size_t), data, json)
  end function write_f8_2

  function write_f4_1(values, json) result(status)
    real(c_float), intent(in), target, contiguous :: values(:)
    character(len=:), allocatable, intent(out) :: json
    integer(c_int) :: status
    type(c_ptr) :: data
    data = c_null_ptr
    if (size(values) > 0) data = c_loc(values)
    status = write_array('=f4', shape(values, kind=c_size_t), data, json)
  end function write_f4_1

  function write_f4_2(values, json) result(status)
    real(c_float), intent(in), target, contiguous :: values(:, :)
    character(len=:), allocatable, intent(out) :: json
    integer(c_int) :: status
    type(c_ptr) :: data
    data = c_null_ptr
    if (size(values) > 0) data = c_loc(values)
    status = write_array('=f4', shape(values, kind=c_size_t), data, json)
  end function write_f4_2

  function write_i4_1(values, json) result(status)
    integer(c_int32_t), intent(in), target, contiguous :: values(:)
    character(len=:), allocatable, intent(out) :: json
    integer(c_int) :: status
    type(c_ptr) :: data
    data = c_null_ptr
    if (size(values) > 0) data = c_loc(values)
    status = write_array('=i4', shape(values, kind=c_size_t), data, json)
  end function write_i4_1

  function write_i4_2(values, json) result(status)
    integer(c_int32_t), intent(in), target, contiguous :: values(:, :)
    character(len=:), allocatable, intent(out) :: json
    integer(c_int) :: status
    type(c_ptr) :: data
    data = c_null_ptr
    if (size(values) > 0) data = c_loc(values)
    status = write_array('=i4', shape(values, kind=c_size_t), data, json)
  end function write_i4_2

  function write_i8_1(values, json) result(status)
    integer(c_int64_t), intent(in), target, contiguous :: values(:)
    character(len=:), allocatable, intent(out) :: json
    integer(c_int) :: status
    type(c_ptr) :: data
    data = c_null_ptr
    if (size(values) > 0) data = c_loc(values)
    status = write_array('=i8', shape(values, kind=c_size_t), data, json)
  end function write_i8_1

  function write_i8_2(values, json) result(status)
    integer(c_int64_t), intent(in), target, contiguous :: values(:, :)
    character(len=:), allocatable, intent(out) :: json
    integer(c_int) :: status
    type(c_ptr) :: data
    data = c_null_ptr
    if (size(values) > 0) data = c_loc(values)
    status = write_array('=i8', shape(values, kind=c_size_t), data, json)
  end function write_i8_2

  function write_c16_1(values, json) result(status)
    complex(c_double_complex), intent(in), target, contiguous :: values(:)
    character(len=:), allocatable, intent(out) :: json
    integer(c_int) :: status
    type(c_ptr) :: data
    data = c_null_ptr
    if (size(values) > 0) data = c_loc(values)
    status = write_array('=c16', shape(values, kind=c_size_t), data, json)
  end function write_c16_1

  function write_c16_2(values, json) result(status)
    complex(c_double_complex), intent(in), target, contiguous :: values(:, :)
    character(len=:), allocatable, intent(out) :: json
    integer(c_int) :: status
    type(c_ptr) :: data
    data = c_null_ptr
    if (size(values) > 0) data = c_loc(values)
    status = write_array('=c16', shape(values, kind=c_size_t), data, json)
  end function write_c16_2

  function write_b1_1(values, json) result(status)
    logical(c_bool), intent(in), target, contiguous :: values(:)
    character(len=:), allocatable, intent(out) :: json
    integer(c_int) :: status
    type(c_ptr) :: data
    data = c_null_ptr
    if (size(values) > 0) data = c_loc(values)
    status = write_array('|b1', shape(values, kind=c_size_t), data, json)
  end function write_b1_1

  function write_b1_2(values, json) result(status)
    logical(c_bool), intent(in), target, contiguous :: values(:, :)
    character(len=:), allocatable, intent(out) :: json
    integer(c_int) :: status
    type(c_ptr) :: data
    data = c_null_ptr
    if (size(values) > 0) data = c_loc(values)
    status = write_array('|b1', shape(values, kind=c_size_t), data, json)
  end function write_b1_2

  !> Reads the bytes at pointer in json: the library's copy at data, n
  !> bytes long, to free with c_bytes_free.
  function bytes_open(json, pointer, data, n) result(status)
    character(len=*), intent(in) :: json
    character(len=*), intent(in), optional :: pointer
    type(c_ptr), intent(out) :: data
    integer(c_size_t), intent(out) :: n
    integer(c_int) :: status
    status = c_bytes_read(c_str(json), c_pointer_str(pointer), data, n)
  end function bytes_open

  function bytes_read_string(json, data, pointer, errmsg) result(status)
    character(len=*), intent(in) :: json
    character(len=:), allocatable, intent(out) :: data
    character(len=*), intent(in), optional :: pointer
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer(c_int) :: status
    type(c_ptr) :: at
    integer(c_size_t) :: n, i
    character(kind=c_char), pointer :: chars(:)
    status = bytes_open(json, pointer, at, n)
    if (status /= ACADEMY_OK) then
      if (present(errmsg)) errmsg = academy_last_error()
      return
    end if
    allocate (character(len=n) :: data)
    if (n > 0) then
      call c_f_pointer(at, chars, [n])
      do i = 1, n
        data(i:i) = chars(i)
      end do
    end if
    call c_bytes_free(at, n)
  end function bytes_read_string

  function bytes_read_int8(json, data, pointer, errmsg) result(status)
    character(len=*), intent(in) :: json
    integer(c_int8_t), allocatable, intent(out) :: data(:)
    character(len=*), intent(in), optional :: pointer
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer(c_int) :: status
    type(c_ptr) :: at
    integer(c_size_t) :: n
    integer(c_int8_t), pointer :: raw(:)
    status = bytes_open(json, pointer, at, n)
    if (status /= ACADEMY_OK) then
      if (present(errmsg)) errmsg = academy_last_error()
      return
    end if
    allocate (data(n))
    if (n > 0) then
      call c_f_pointer(at, raw, [n])
      data = raw
    end if
    call c_bytes_free(at, n)
  end function bytes_read_int8

  !> {"py/bytes": ...} of the n bytes at data (NULL when n is 0).
  function write_bytes(data, n, json) result(status)
    type(c_ptr), intent(in) :: data
    integer(c_size_t), intent(in) :: n
    character(len=:), allocatable, intent(out) :: json
    integer(c_int) :: status
    integer(c_int8_t), target :: none(1)
    type(c_ptr) :: at, out
    at = data
    if (.not. c_associated(at)) at = c_loc(none)
    status = c_bytes_write(at, n, out)
    if (status == ACADEMY_OK) json = take_string(out)
  end function write_bytes

  function bytes_write_string(data, json) result(status)
    character(len=*), intent(in) :: data
    character(len=:), allocatable, intent(out) :: json
    integer(c_int) :: status
    character(kind=c_char), target :: buf(max(1, len(data)))
    type(c_ptr) :: at
    integer :: i
    do i = 1, len(data)
      buf(i) = data(i:i)
    end do
    ! Through a variable: gfortran 12 given c_loc(buf) as the argument
    ! loses json's length here (a crash when it is set).
    at = c_loc(buf)
    status = write_bytes(at, len(data, kind=c_size_t), json)
  end function bytes_write_string

  function bytes_write_int8(data, json) result(status)
    integer(c_int8_t), intent(in), target, contiguous :: data(:)
    character(len=:), allocatable, intent(out) :: json
    integer(c_int) :: status
    type(c_ptr) :: at
    at = c_null_ptr
    if (size(data) > 0) at = c_loc(data)
    status = write_bytes(at, size(data, kind=c_size_t), json)
  end function bytes_write_int8

end module academy
