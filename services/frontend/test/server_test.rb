# frozen_string_literal: true

require_relative 'test_helper'

# The app behind Puma (Frontend::Service, in-process): request log lines, refusals and errors
# logged and counted, request body limits, queueing beyond the thread count, graceful drain.
class ServerTest < Minitest::Test
  include ServerHelpers

  def setup
    @stubs = []
    @frontends = []
  end

  def teardown
    (@frontends + @stubs).each(&:stop)
  end

  def stub(**kwargs, &answer)
    StubBackend.new(**kwargs, &answer).tap { |s| @stubs << s }
  end

  def frontend(env = {}, **options)
    env = { 'NODEJS_URL' => dead_url, 'CRYSTAL_URL' => dead_url }.merge(env)
    FrontendServer.new(env, **options).tap { |f| @frontends << f }
  end

  def server_counts(frontend)
    JSON.parse(get("#{frontend.url}/json").body)['server']
  end

  def test_one_log_line_per_request_with_trace_id
    fe = frontend
    assert_equal '200', get("#{fe.url}/health").code
    missing = get("#{fe.url}/nope")
    assert_equal '404', missing.code
    assert_equal 'not found', JSON.parse(missing.body)['error']
    uri = URI(fe.url)
    post = Net::HTTP.start(uri.host, uri.port, nil) { |http| http.post('/', 'x=1', 'Content-Type' => 'text/plain') }
    assert_equal '405', post.code
    amzn = 'Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1'
    tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
    assert_equal '200', get("#{fe.url}/json?x=1", 'X-Amzn-Trace-Id' => amzn, 'traceparent' => tp).code
    lines = fe.log_lines(at_least: 4)
    assert_equal 4, lines.size
    assert_equal [['GET', '/health', 200], ['GET', '/json', 200], ['GET', '/nope', 404], ['POST', '/', 405]],
                 lines.map { |l| [l['method'], l['path'], l['status']] }.sort
    lines.each do |line|
      assert_equal 'frontend', line['service']
      assert_kind_of Numeric, line['duration_ms']
      assert Time.iso8601(line['time'])
      assert line.key?('trace_id')
    end
    traced = lines.find { |l| l['path'] == '/json' }
    assert_equal '1-5759e988-bd862e3fe1be46a994272793', traced['trace_id']
    assert_equal amzn, traced['x_amzn_trace_id']
    assert_equal tp, traced['traceparent']
    assert_equal '0af7651916cd43dd8448eb211c80319c', Frontend::RequestLog.trace_id(nil, tp)
    assert_nil Frontend::RequestLog.trace_id(nil, nil)
    counts = server_counts(fe)
    assert_equal [4, 0, 0, 1], counts.values_at('requests', 'errors', 'refused', 'in_flight')
  end

  def test_answers_carry_content_length_and_head_has_no_body
    fe = frontend
    uri = URI(fe.url)
    Net::HTTP.start(uri.host, uri.port, nil) do |http|
      res = http.get('/health')
      assert_equal res.body.bytesize.to_s, res['Content-Length']
      head = http.head('/json') # same keep-alive connection
      assert_equal '200', head.code
      assert_nil head.body
      assert_operator head['Content-Length'].to_i, :>, 0
    end
  end

  def test_malformed_requests_are_refused_logged_and_counted
    fe = frontend
    port = URI(fe.url).port
    assert raw(port, "NONSENSE\r\n\r\n").start_with?('HTTP/1.1 400')
    assert raw(port, "GET / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n").start_with?('HTTP/1.1 400')
    assert raw(port, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").start_with?('HTTP/1.1 501')
    refusals = fe.log_lines(at_least: 3).select { |l| l['event'] == 'request_refused' }
    assert_equal [400, 400, 501], refusals.map { |l| l['status'] }.sort
    assert(refusals.all? { |l| l['listener'] == 'app' && l['error'].is_a?(String) })
    assert(refusals.any? { |l| l['error'].include?('99999999 bytes') && l['path'] == '/' })
    counts = server_counts(fe)
    assert_equal 3, counts['refused']
    assert_equal 0, counts['requests'] # none reached the app
  end

  def test_a_body_within_the_limit_is_read
    fe = frontend
    uri = URI(fe.url)
    res = Net::HTTP.start(uri.host, uri.port, nil) { |http| http.post('/', 'x' * 200_000) }
    assert_equal '405', res.code
  end

  def test_an_exception_in_the_app_is_a_logged_and_counted_500
    fe = frontend
    fe.app.stub(:gather, ->(_env) { raise 'boom' }) do
      res = get("#{fe.url}/json")
      assert_equal '500', res.code
      assert_equal({ 'error' => 'internal error' }, JSON.parse(res.body))
    end
    line = fe.log_lines(at_least: 1).find { |l| l['path'] == '/json' }
    assert_equal 500, line['status']
    assert_equal 'RuntimeError: boom', line['error']
    counts = server_counts(fe)
    assert_equal [1, 1], counts.values_at('requests', 'errors')
  end

  def test_more_clients_than_threads_are_queued_not_refused
    slow = stub(delay: 0.2)
    fe = frontend({ 'NODEJS_URL' => slow.url, 'CRYSTAL_URL' => slow.url }, threads: 2, min_threads: 2)
    clients = 12.times.map { Thread.new { get("#{fe.url}/json") } }
    results = clients.map(&:value)
    assert_equal ['200'] * 12, results.map(&:code)
    assert(results.all? { |r| JSON.parse(r.body)['backends']['nodejs']['ok'] })
    counts = server_counts(fe)
    assert_equal [0, 0], counts.values_at('errors', 'refused')
    assert_equal 2, counts['capacity']['threads']
  end

  def test_drain_waits_for_in_flight_requests
    slow = stub(delay: 0.4, &->(_req) { { service: 'nodejs', version: '1' } })
    fe = frontend({ 'NODEJS_URL' => slow.url, 'BACKEND_TIMEOUT_MS' => '5000' })
    client = Thread.new { get("#{fe.url}/json") }
    sleep 0.15
    fe.service.stop
    sleep 0.1
    assert_raises(Errno::ECONNREFUSED) { get("#{fe.url}/health") }
    assert fe.service.wait(5), 'drained'
    assert_equal '200', client.value.code
    assert_equal true, JSON.parse(client.value.body)['backends']['nodejs']['ok']
  end

  def test_drain_timeout_cuts_a_request_off_with_a_logged_503
    hung = stub(delay: 3)
    fe = frontend({ 'NODEJS_URL' => hung.url, 'BACKEND_TIMEOUT_MS' => '10000' }, drain_timeout: 0.3)
    client = Thread.new { get("#{fe.url}/json") }
    sleep 0.15
    fe.service.stop
    refute fe.service.wait(8), 'a request had to be cut off'
    assert_equal '503', client.value.code
    line = fe.log_lines(at_least: 1).find { |l| l['path'] == '/json' }
    assert_equal 503, line['status']
    assert_match(/ForceShutdown/, line['error'])
  end

  def test_capacity_follows_somaxconn
    Dir.mktmpdir do |dir|
      path = File.join(dir, 'somaxconn')
      File.write(path, "128\n")
      assert_equal({ threads: 64, backlog: 128, concurrent_requests: 192, workers: 0 }, Frontend.capacity(64, 1024, path))
      File.write(path, "4096\n")
      assert_equal 1088, Frontend.capacity(64, 1024, path)[:concurrent_requests]
    end
    assert_equal 1088, Frontend.capacity(64, 1024, '/nonexistent')[:concurrent_requests]
  end

  def test_listen_queue_and_overflows_are_read
    server = TCPServer.new('127.0.0.1', 0)
    server.listen(77)
    clients = 2.times.map { TCPSocket.new('127.0.0.1', server.addr[1]) }
    sleep 0.05
    assert_equal({ queued: 2, limit: 77 }, Frontend::ServerStats.listen_queue(server))
    assert_nil Frontend::ServerStats.listen_queue(nil)
    assert_kind_of Integer, Frontend::ServerStats.listen_overflows
    assert_nil Frontend::ServerStats.listen_overflows('/nonexistent')
  ensure
    clients&.each(&:close)
    server&.close
  end
end
