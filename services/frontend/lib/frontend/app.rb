# frozen_string_literal: true

module Frontend
  # The application (a Rack app): GET / (the page), GET /json (the same data), GET /health.
  class App
    BACKENDS = %w[nodejs crystal].freeze
    ROUTES = %w[/ /json /health].freeze

    attr_reader :config, :tallies, :stats, :weights

    # stats: the server's counters (ServerStats), shown under "server".
    # weights: where the configured canary weights come from (WeightsDir).
    # canary: the canary's live step and last verdict, per virtual service (CanaryStatus).
    def initialize(config, stats: ServerStats.new, weights: WeightsDir.new(config.weights_dir),
                   canary: CanaryStatus.directory(config.weights_dir))
      @config = config
      @stats = stats
      @weights = weights
      @canary = canary
      # One tally per backend: which service answered it, over the last TALLY_WINDOW answers.
      @tallies = BACKENDS.to_h { |name| [name, Tally.new(config.window)] }
    end

    # The Node.js backend's tally (which version answered lately).
    def tally
      @tallies['nodejs']
    end

    def self.json(status, data)
      [status, { 'Content-Type' => 'application/json; charset=utf-8' }, [JSON.generate(data)]]
    end

    def self.method_not_allowed
      [405, { 'Content-Type' => 'application/json', 'Allow' => 'GET, HEAD' },
       [JSON.generate(error: 'method not allowed')]]
    end

    # GET/HEAD /health, on either listener.
    def self.health(env)
      return method_not_allowed unless %w[GET HEAD].include?(env['REQUEST_METHOD'])

      json(200, status: 'ok')
    end

    def call(env)
      path = env['PATH_INFO']
      return App.json(404, error: 'not found', path: path) unless ROUTES.include?(path)
      return App.health(env) if path == '/health'
      return App.method_not_allowed unless %w[GET HEAD].include?(env['REQUEST_METHOD'])

      data = gather(env)
      if path == '/json'
        App.json(200, data)
      else
        [200, { 'Content-Type' => 'text/html; charset=utf-8', 'Cache-Control' => 'no-store' },
         [Page.render(data, refresh_seconds(env['QUERY_STRING']))]]
      end
    end

    # Calls both backends at once; each gets the configured timeout, and a
    # call still running at its deadline is abandoned and reported.
    def gather(env)
      backends = call_backends(env)
      backends.each do |name, result|
        body = result[:body]
        @tallies[name].record(body['service'], body['version']) if result[:ok]
      end
      weights = @weights.current
      splits = BACKENDS.to_h { |name| [name, split(name, @tallies[name].snapshot, weights.weights)] }
      node = @tallies['nodejs'].snapshot
      versions_total = node[:versions].values.sum
      {
        backends: backends,
        # Kept for existing consumers: which Node.js *version* answered lately.
        nodejs_versions: node[:versions],
        nodejs_versions_percent: node[:versions].transform_values { |n| (100.0 * n / versions_total).round(1) },
        samples: node[:samples],
        window: @config.window,
        timeout_ms: @config.timeout_ms,
        frontend: { pod: @config.pod, zone: @config.zone },
        weights: weights.to_h,
        canary: @canary.current.weights,
        split: splits,
        server: @stats.snapshot
      }
    end

    # Configured weights (nil: unknown) next to the observed answers, per target service.
    def split(name, observed, weights)
      configured = weights&.[](name)
      total = configured&.values&.sum
      samples = observed[:samples]
      services = (configured&.keys || []) | observed[:services].keys
      targets = services.to_h do |service|
        weight = configured&.[](service)
        count = observed[:services].fetch(service, 0)
        [service, { weight: weight,
                    configured_percent: weight && total&.positive? ? (100.0 * weight / total).round(1) : nil,
                    count: count,
                    observed_percent: samples.positive? ? (100.0 * count / samples).round(1) : nil }]
      end
      { virtual_service: name, configured: !configured.nil?, samples: samples, window: @config.window,
        targets: targets }
    end

    def refresh_seconds(query)
      value = URI.decode_www_form(query.to_s).assoc('refresh')&.last
      return nil unless value&.match?(/\A-?\d+\z/)

      value.to_i.clamp(REFRESH_RANGE.min, REFRESH_RANGE.max)
    rescue ArgumentError
      nil
    end

    private

    def call_backends(env)
      headers = TRACE_HEADERS.each_with_object({}) do |(key, name), out|
        out[name] = env[key] if env[key]
      end
      timeout_s = @config.timeout_ms / 1000.0
      urls = { 'nodejs' => @config.nodejs_url, 'crystal' => @config.crystal_url }
      threads = urls.transform_values do |url|
        Thread.new { BackendCall.new(url, timeout_s, headers).run }
      end
      # Net::HTTP's timeouts are per phase; this deadline bounds the total.
      deadline = Frontend.monotonic + timeout_s + 0.05
      threads.to_h do |name, thread|
        remaining = [deadline - Frontend.monotonic, 0].max
        if thread.join(remaining)
          [name, thread.value]
        else
          thread.kill
          [name, { ok: false, error: "timeout after #{@config.timeout_ms} ms", elapsed_ms: @config.timeout_ms.to_f }]
        end
      end
    end
  end

  # The HEALTH_PORT handler: /health and nothing else, so the port that
  # bypasses the mesh's mTLS never exposes the application.
  class HealthApp
    def call(env)
      return App.json(404, error: 'not found', path: env['PATH_INFO']) unless env['PATH_INFO'] == '/health'

      App.health(env)
    end
  end
end
