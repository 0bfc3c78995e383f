# frozen_string_literal: true

require_relative 'test_helper'

class FrontendTest < Minitest::Test
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

  def frontend(env)
    FrontendServer.new(env).tap { |f| @frontends << f }
  end

  def node_answer(version = '1', message = 'Hello from Node')
    ->(_req) { { service: 'nodejs', version: version, message: message, pod: 'node-pod', zone: 'az-1' } }
  end

  def test_page_shows_both_backends
    node = stub(&node_answer)
    crystal = stub { { service: 'crystal', version: '1', message: 'Hello from Crystal', pod: 'c-pod', zone: 'az-2' } }
    fe = frontend('NODEJS_URL' => node.url, 'CRYSTAL_URL' => crystal.url)
    res = get("#{fe.url}/")
    assert_equal '200', res.code
    assert_match %r{text/html}, res['Content-Type']
    %w[Hello\ from\ Node node-pod az-1 Hello\ from\ Crystal c-pod az-2].each do |text|
      assert_includes res.body, text
    end
    refute_includes res.body, 'unavailable'
  end

  def test_json_reports_both_backends
    node = stub(&node_answer)
    crystal = stub { { service: 'crystal', version: '1', message: 'c', pod: 'c', zone: 'z' } }
    fe = frontend('NODEJS_URL' => node.url, 'CRYSTAL_URL' => crystal.url)
    data = JSON.parse(get("#{fe.url}/json").body)
    assert_equal true, data['backends']['nodejs']['ok']
    assert_equal 200, data['backends']['nodejs']['status']
    assert_equal 'nodejs', data['backends']['nodejs']['body']['service']
    assert_equal 'crystal', data['backends']['crystal']['body']['service']
    assert_kind_of Numeric, data['backends']['crystal']['elapsed_ms']
    assert_equal({ '1' => 1 }, data['nodejs_versions'])
    assert_equal 100, data['window']
  end

  def test_escapes_backend_content
    node = stub(&node_answer('1', '<script>alert("x")</script>'))
    fe = frontend('NODEJS_URL' => node.url, 'CRYSTAL_URL' => dead_url)
    body = get("#{fe.url}/").body
    refute_includes body, '<script>'
    assert_includes body, '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'
  end

  def test_trace_headers_are_propagated
    node = stub(&node_answer)
    crystal = stub { { service: 'crystal', version: '1' } }
    fe = frontend('NODEJS_URL' => node.url, 'CRYSTAL_URL' => crystal.url)
    amzn = 'Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1'
    tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
    get("#{fe.url}/", 'X-Amzn-Trace-Id' => amzn, 'traceparent' => tp)
    [node, crystal].each do |backend|
      seen = backend.requests.pop
      assert_equal amzn, seen['x-amzn-trace-id']
      assert_equal tp, seen['traceparent']
    end
    line = fe.log_lines(at_least: 1).last
    assert_equal '1-5759e988-bd862e3fe1be46a994272793', line['trace_id']
    assert_equal tp, line['traceparent']
  end

  def test_unavailable_backend_still_renders
    crystal = stub { { service: 'crystal', version: '1', message: 'up' } }
    fe = frontend('NODEJS_URL' => dead_url, 'CRYSTAL_URL' => crystal.url)
    res = get("#{fe.url}/")
    assert_equal '200', res.code
    assert_match(/nodejs <span class="down">unavailable/, res.body)
    assert_match(/ECONNREFUSED|refused/i, res.body)
    data = JSON.parse(get("#{fe.url}/json").body)
    assert_equal false, data['backends']['nodejs']['ok']
    assert_match(/refused/i, data['backends']['nodejs']['error'])
    assert_equal true, data['backends']['crystal']['ok']
    assert_equal({}, data['nodejs_versions'])
  end

  def test_non_200_backend_is_unavailable
    fe = frontend('NODEJS_URL' => "#{stub.url}/missing", 'CRYSTAL_URL' => dead_url)
    node = JSON.parse(get("#{fe.url}/json").body)['backends']['nodejs']
    assert_equal false, node['ok']
    assert_equal 404, node['status']
    assert_equal 'HTTP 404', node['error']
  end

  def test_timeout_is_honoured
    slow = stub(delay: 1.5)
    fast = stub(&node_answer)
    fe = frontend('NODEJS_URL' => fast.url, 'CRYSTAL_URL' => slow.url, 'BACKEND_TIMEOUT_MS' => '200')
    res, elapsed = timed { get("#{fe.url}/json") }
    assert_operator elapsed, :<, 0.7
    data = JSON.parse(res.body)
    assert_equal false, data['backends']['crystal']['ok']
    assert_match(/timeout after 200 ms/, data['backends']['crystal']['error'])
    assert_equal true, data['backends']['nodejs']['ok']
  end

  def test_backends_are_called_concurrently
    a = stub(delay: 0.3, &node_answer)
    b = stub(delay: 0.3)
    fe = frontend('NODEJS_URL' => a.url, 'CRYSTAL_URL' => b.url)
    _, elapsed = timed { get("#{fe.url}/json") }
    assert_operator elapsed, :>=, 0.3
    assert_operator elapsed, :<, 0.55, 'both 300 ms calls should overlap'
  end

  def test_tally_counts_versions_within_window
    calls = 0
    node = stub do |_req|
      calls += 1
      { service: 'nodejs', version: calls.odd? ? '1' : '2', message: 'm' }
    end
    fe = frontend('NODEJS_URL' => node.url, 'CRYSTAL_URL' => dead_url, 'TALLY_WINDOW' => '4')
    5.times { get("#{fe.url}/json") } # versions 1,2,1,2,1 -> window keeps 2,1,2,1
    data = JSON.parse(get("#{fe.url}/json").body) # sixth answer: 2 -> 1,2,1,2
    assert_equal({ '1' => 2, '2' => 2 }, data['nodejs_versions'])
    assert_equal({ '1' => 50.0, '2' => 50.0 }, data['nodejs_versions_percent'])
    assert_equal 4, data['samples']
    page = get("#{fe.url}/").body
    assert_includes page, 'last 4 of 4 requests'
    assert_includes page, '50.0%'
  end

  def test_refresh_is_clamped
    fe = frontend('NODEJS_URL' => dead_url, 'CRYSTAL_URL' => dead_url)
    assert_includes get("#{fe.url}/?refresh=5").body, '<meta http-equiv="refresh" content="5">'
    assert_includes get("#{fe.url}/?refresh=0").body, 'content="1"'
    assert_includes get("#{fe.url}/?refresh=99999").body, 'content="300"'
    refute_includes get("#{fe.url}/?refresh=abc").body, 'http-equiv="refresh"'
    refute_includes get("#{fe.url}/").body, 'http-equiv="refresh"'
  end

  def test_health_404_405_and_log_lines
    fe = frontend('NODEJS_URL' => dead_url, 'CRYSTAL_URL' => dead_url)
    health = get("#{fe.url}/health")
    assert_equal '200', health.code
    assert_equal({ 'status' => 'ok' }, JSON.parse(health.body))
    missing = get("#{fe.url}/nope")
    assert_equal '404', missing.code
    assert_equal 'not found', JSON.parse(missing.body)['error']
    uri = URI("#{fe.url}/")
    post = Net::HTTP.start(uri.host, uri.port, nil) { |http| http.post('/', 'x=1', 'Content-Type' => 'text/plain') }
    assert_equal '405', post.code
    lines = fe.log_lines(at_least: 3)
    assert_equal 3, lines.size
    # Each connection's thread logs after answering, so the lines may come in either order.
    assert_equal [['GET', '/health', 200], ['GET', '/nope', 404], ['POST', '/', 405]],
                 lines.map { |l| [l['method'], l['path'], l['status']] }.sort
    lines.each do |line|
      assert_kind_of Numeric, line['duration_ms']
      assert Time.iso8601(line['time'])
      assert line.key?('trace_id')
    end
  end

  def test_proxy_comes_from_the_environment_without_dns
    uri = URI('http://nodejs.appmeshworkshop.hosted.local:3000/')
    assert_nil Frontend.proxy_for(uri, {})
    proxy = Frontend.proxy_for(uri, { 'http_proxy' => 'http://127.0.0.1:15001' })
    assert_equal ['127.0.0.1', 15_001], [proxy.host, proxy.port]
    assert_nil Frontend.proxy_for(uri, { 'http_proxy' => 'http://127.0.0.1:15001', 'no_proxy' => '.hosted.local' })
    assert_nil Frontend.proxy_for(uri, { 'HTTP_PROXY' => 'http://127.0.0.1:15001', 'NO_PROXY' => '*' })
    refute_nil Frontend.proxy_for(uri, { 'http_proxy' => 'http://127.0.0.1:15001', 'no_proxy' => 'example.com' })
  end
end
