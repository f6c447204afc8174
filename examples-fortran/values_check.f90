!> Checks the module's Python-value helpers with no network: every array
!> type and rank written and read back, a row-major (numpy order "C")
!> array read with numpy's indices, the errors for a wrong dtype, rank or
!> value, bytes, and request bodies. Prints one line per check
!> (tests/fortran.rs compares them); T means the values came back equal.
program values_check
  use, intrinsic :: iso_c_binding
  use academy
  implicit none

  interface
    !> The C function itself, to make a row-major array as numpy would.
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
  end interface

  call round_trips()
  call row_major()
  call refusals()
  call bytes()
  call request_bodies()

contains

  subroutine round_trips()
    real(c_double), allocatable :: f8(:), f8_2(:, :)
    real(c_float), allocatable :: f4(:), f4_2(:, :)
    integer(c_int32_t), allocatable :: i4(:), i4_2(:, :)
    integer(c_int64_t), allocatable :: i8(:), i8_2(:, :)
    complex(c_double_complex), allocatable :: c16(:), c16_2(:, :)
    logical(c_bool), allocatable :: b1(:), b1_2(:, :)
    character(len=:), allocatable :: json, json_2
    real(c_double), parameter :: x(6) = [0d0, -1.5d0, 1d300, 2d-300, 5d0, 6d0]
    real(c_float), parameter :: y(3) = [0.25, -2.0, 3e30]
    integer(c_int64_t), parameter :: big = huge(0_c_int64_t)

    call must(academy_ndarray_write(x, json))
    call must(academy_ndarray_write(reshape(x, [2, 3]), json_2))
    call must(academy_ndarray_read(json, f8))
    call must(academy_ndarray_read(json_2, f8_2))
    print '(a, 2l2)', 'f8', same(f8, x), same(reshape(f8_2, [6]), x) .and. all(shape(f8_2) == [2, 3])

    call must(academy_ndarray_write(y, json))
    call must(academy_ndarray_write(reshape(y(1:2), [1, 2]), json_2))
    call must(academy_ndarray_read(json, f4))
    call must(academy_ndarray_read(json_2, f4_2))
    print '(a, 2l2)', 'f4', same(real(f4, c_double), real(y, c_double)), &
      same(real(reshape(f4_2, [2]), c_double), real(y(1:2), c_double)) .and. all(shape(f4_2) == [1, 2])

    call must(academy_ndarray_write([-huge(0_c_int32_t), 0_c_int32_t, huge(0_c_int32_t)], json))
    call must(academy_ndarray_write(reshape([1_c_int32_t, 2_c_int32_t, 3_c_int32_t, 4_c_int32_t], [2, 2]), json_2))
    call must(academy_ndarray_read(json, i4))
    call must(academy_ndarray_read(json_2, i4_2))
    print '(a, 2l2)', 'i4', all(i4 == [-huge(0_c_int32_t), 0_c_int32_t, huge(0_c_int32_t)]), &
      i4_2(1, 2) == 3 .and. i4_2(2, 1) == 2

    call must(academy_ndarray_write([-big, big], json))
    call must(academy_ndarray_write(reshape([-big, 1_c_int64_t, big], [3, 1]), json_2))
    call must(academy_ndarray_read(json, i8))
    call must(academy_ndarray_read(json_2, i8_2))
    print '(a, 2l2)', 'i8', all(i8 == [-big, big]), all(i8_2(:, 1) == [-big, 1_c_int64_t, big])

    call must(academy_ndarray_write([(1d0, -2d0), (-3d0, 0.5d0)], json))
    call must(academy_ndarray_write(reshape([(1d0, 1d0), (2d0, 2d0)], [2, 1]), json_2))
    call must(academy_ndarray_read(json, c16))
    call must(academy_ndarray_read(json_2, c16_2))
    print '(a, 2l2)', 'c16', same([c16%re, c16%im], [1d0, -3d0, -2d0, 0.5d0]), same([c16_2(2, 1)%im], [2d0])

    call must(academy_ndarray_write(logical([.true., .false., .true.], c_bool), json))
    call must(academy_ndarray_write(reshape(logical([.false., .true.], c_bool), [1, 2]), json_2))
    call must(academy_ndarray_read(json, b1))
    call must(academy_ndarray_read(json_2, b1_2))
    print '(a, 2l2)', 'b1', all(b1 .eqv. logical([.true., .false., .true.], c_bool)), b1_2(1, 2) .and. .not. b1_2(1, 1)

    ! No elements: numpy's shape (0,) and (2, 0).
    call must(academy_ndarray_write(x(1:0), json))
    call must(academy_ndarray_write(reshape(x(1:0), [2, 0]), json_2))
    call must(academy_ndarray_read(json, f8))
    call must(academy_ndarray_read(json_2, f8_2))
    print '(a, 2l2)', 'empty', size(f8) == 0, all(shape(f8_2) == [2, 0])
  end subroutine round_trips

  !> A row-major (2, 3) array whose element [i, j] is 10*i + j, as numpy
  !> lays out np.array([[0, 1, 2], [10, 11, 12]]), read at '/1' of a list.
  subroutine row_major()
    real(c_double), target :: rows(6) = [0d0, 1d0, 2d0, 10d0, 11d0, 12d0]
    real(c_double), allocatable :: a(:, :)
    type(c_ptr) :: out
    character(len=:), allocatable :: json
    integer :: i, j
    logical :: ok
    call must(c_ndarray_write('<f8' // c_null_char, 2_c_size_t, [2_c_size_t, 3_c_size_t], 'C', c_loc(rows), out))
    json = '[null, ' // academy_c_string(out) // ']'
    call c_string_free_(out)
    call must(academy_ndarray_read(json, a, pointer='/1'))
    ok = all(shape(a) == [2, 3])
    do j = 1, 3
      do i = 1, 2
        ok = ok .and. same([a(i, j)], [real(10 * (i - 1) + (j - 1), c_double)])
      end do
    end do
    print '(a, l2)', 'row-major read with numpy''s indices', ok
  end subroutine row_major

  subroutine refusals()
    real(c_double), allocatable :: a(:), a2(:, :)
    character(len=:), allocatable :: json, why
    integer(c_int) :: status
    call must(academy_ndarray_write([1_c_int32_t, 2_c_int32_t], json))
    status = academy_ndarray_read(json, a, errmsg=why)
    print '(a, a, 1x, l1, 1x, a)', 'wrong dtype ', academy_status_name(status), allocated(a), why
    call must(academy_ndarray_write([1d0, 2d0], json))
    status = academy_ndarray_read(json, a2, errmsg=why)
    print '(a, a, 1x, a)', 'wrong rank ', academy_status_name(status), why
    status = academy_ndarray_read('[1.0, 2.0]', a, errmsg=why)
    print '(a, a, 1x, l1)', 'not an array ', academy_status_name(status), why == academy_last_error() .and. len(why) > 0
    status = academy_ndarray_read(json, a, pointer='/nothing')
    print '(a, a)', 'nothing at the pointer ', academy_status_name(status)
  end subroutine refusals

  subroutine bytes()
    character(len=:), allocatable :: json, text, value
    integer(c_int8_t), allocatable :: raw(:)
    character(len=*), parameter :: b = 'ab ' // char(0) // char(255) // ' '
    call must(academy_bytes_write(b, json))
    call must(academy_bytes_read(json, text))
    call must(academy_bytes_read(json, raw))
    print '(a, 3l2)', 'bytes', text == b .and. len(text) == 6, size(raw) == 6 .and. raw(5) == -1, raw(4) == 0
    call must(academy_bytes_write(raw(1:2), json))
    call must(academy_bytes_read('{"k": [' // json // ']}', text, pointer='/k/0'))
    print '(a, l2)', 'bytes at a pointer', text == 'ab'
    call must(academy_json_get('{"a": [1, {"b": "c"}]}', '/a/1/b', value))
    print '(a, a)', 'json_get ', value
  end subroutine bytes

  !> An action request's arguments written in JSON or pickle.
  subroutine request_bodies()
    character(len=:), allocatable :: as_json, as_pickle, auto
    call must(academy_action_request_body('f', as_json, args_json='[1]', serialization='json'))
    call must(academy_action_request_body('f', as_pickle, args_json='[1]', serialization='pickle'))
    call must(academy_action_request_body('f', auto, args_json='[1]'))
    print '(a, 2l2, 1x, a)', 'bodies', auto == as_json, as_pickle /= as_json, &
      academy_status_name(academy_action_request_body('f', auto, serialization='yaml'))
  end subroutine request_bodies

  subroutine c_string_free_(p)
    type(c_ptr), intent(in) :: p
    interface
      subroutine academy_string_free(s) bind(C, name="academy_string_free")
        import :: c_ptr
        type(c_ptr), value :: s
      end subroutine academy_string_free
    end interface
    call academy_string_free(p)
  end subroutine c_string_free_

  !> Whether a and b hold the same numbers, bit for bit.
  logical function same(a, b)
    real(c_double), intent(in) :: a(:), b(:)
    same = size(a) == size(b)
    if (same) same = all(transfer(a, 0_c_int64_t, size(a)) == transfer(b, 0_c_int64_t, size(b)))
  end function same

  subroutine must(status)
    integer(c_int), intent(in) :: status
    if (status /= ACADEMY_OK) then
      print '(a)', 'failed: ' // academy_status_name(status) // ': ' // academy_last_error()
      error stop 1
    end if
  end subroutine must

end program values_check
