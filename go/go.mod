module github.com/academy-agents/libacademy/go

go 1.21
