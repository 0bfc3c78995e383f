# frozen_string_literal: true

require_relative 'test_helper'

class MiniHTTPTest < Minitest::Test
  include ServerHelpers

  def setup
    @server = MiniHTTP::Server.new(host: '127.0.0.1', port: 0, log_io: StringIO.new,
                                   handler: ->(req) { [200, {}, "#{req.method} #{req.path} #{req.query}"] })
    @thread = Thread.new { @server.serve }
  end

  def teardown
    @server.request_stop
    @thread.join(2)
  end

  def raw(request)
    socket = TCPSocket.new('127.0.0.1', @server.port)
    socket.write(request)
    socket.read
  ensure
    socket&.close
  end

  def test_parses_request_line_and_query
    reply = raw("GET /a/b?x=1 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert reply.start_with?("HTTP/1.1 200 OK\r\n")
    assert_includes reply, "Connection: close\r\n"
    assert reply.end_with?('GET /a/b x=1')
  end

  def test_reads_a_body_split_across_packets
    socket = TCPSocket.new('127.0.0.1', @server.port)
    socket.write("POST /p HTTP/1.1\r\nContent-Length: 4\r\n\r\nab")
    sleep 0.05
    socket.write('cd')
    assert socket.read.end_with?('POST /p ')
  ensure
    socket&.close
  end

  def test_rejects_malformed_requests
    assert raw("NONSENSE\r\n\r\n").start_with?('HTTP/1.1 400')
    assert raw("GET / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n").start_with?('HTTP/1.1 413')
    assert raw("GET / HTTP/1.1\r\nX: #{'a' * 20_000}\r\n\r\n").start_with?('HTTP/1.1 431')
  end

  def test_drain_waits_for_in_flight_requests
    slow = MiniHTTP::Server.new(host: '127.0.0.1', port: 0, log_io: StringIO.new,
                                handler: ->(_req) { sleep 0.3; [200, {}, 'done'] })
    serving = Thread.new { slow.serve }
    client = Thread.new { get("http://127.0.0.1:#{slow.port}/") }
    sleep 0.1
    slow.request_stop
    serving.join(2)
    assert slow.drain(5)
    assert_equal 'done', client.value.body
    assert_raises(Errno::ECONNREFUSED) { get("http://127.0.0.1:#{slow.port}/") }
  end

  def test_trace_id_extraction
    assert_equal '1-2-3', MiniHTTP.trace_id('x-amzn-trace-id' => 'Self=1;Root=1-2-3')
    assert_equal 'abc', MiniHTTP.trace_id('traceparent' => '00-abc-def-01')
    assert_nil MiniHTTP.trace_id({})
  end
end
