# The value of a promise, running the event loop (later) until it settles: its value, or the condition it
# was rejected with. Fails the test past `seconds`.
settle <- function(promise, seconds = 60) {
  out <- new.env(parent = emptyenv())
  out$done <- FALSE
  finish <- function(value) {
    out$value <- value
    out$done <- TRUE
  }
  promises::then(promise, onFulfilled = finish, onRejected = finish)
  deadline <- Sys.time() + seconds
  while (!out$done) {
    if (Sys.time() > deadline) stop("the promise did not settle within ", seconds, " s")
    later::run_now(0.1)
  }
  out$value
}
