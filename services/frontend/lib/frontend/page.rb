# frozen_string_literal: true

module Frontend
  # The HTML page: the canary split (configured weights next to what answered), each backend's
  # answer and latency, the Node.js versions, this frontend's counters, refresh controls.
  # Everything from outside (backend answers, the weights files) is escaped.
  module Page
    AUTO_REFRESH_CHOICES = [2, 5].freeze

    module_function

    def render(data, refresh)
      <<~HTML
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        #{refresh ? %(<meta http-equiv="refresh" content="#{refresh}">) : ''}
        <title>App Mesh workshop</title>
        <style>
        body { font-family: sans-serif; margin: 2em; color: #222; max-width: 60em; }
        section { border: 1px solid #ccc; border-radius: 6px; padding: 0 1em 1em; margin-bottom: 1em; }
        .ok { color: #1a7f37; } .down { color: #cf222e; } .warn { color: #9a6700; } .muted { color: #666; }
        table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; }
        td.num { text-align: right; font-variant-numeric: tabular-nums; }
        .bar { display: inline-block; height: 0.8em; background: #54aeff; vertical-align: middle; }
        .bar.configured { background: #bbb; }
        nav { margin-bottom: 1em; }
        nav a { display: inline-block; padding: 2px 10px; margin-right: 4px; border: 1px solid #888;
                border-radius: 4px; text-decoration: none; color: #222; background: #f6f8fa; }
        nav a.current { background: #ddf4ff; border-color: #54aeff; }
        </style>
        </head>
        <body>
        <h1>App Mesh workshop</h1>
        <p>Frontend pod #{h(data[:frontend][:pod])} in zone #{h(data[:frontend][:zone])};
        backend timeout #{h(data[:timeout_ms])} ms#{refresh ? "; refreshing every #{refresh} s" : ''}.</p>
        #{render_refresh(refresh)}
        #{render_split(data)}
        #{data[:backends].map { |name, result| render_backend(name, result) }.join("\n")}
        #{render_versions(data)}
        #{render_server(data[:server])}
        </body>
        </html>
      HTML
    end

    def render_refresh(refresh)
      choices = AUTO_REFRESH_CHOICES.map do |seconds|
        css = refresh == seconds ? ' class="current"' : ''
        %(<a href="?refresh=#{seconds}"#{css}>auto-refresh every #{seconds} s</a>)
      end
      now = refresh ? "?refresh=#{refresh}" : '?'
      state = refresh ? "auto-refreshing every #{refresh} s" : 'not auto-refreshing'
      <<~HTML
        <nav id="refresh"><a href="#{now}">refresh</a>#{choices.join}<a href="?"#{refresh ? '' : ' class="current"'}>stop</a>
        <span class="muted">#{state}</span></nav>
      HTML
    end

    def render_split(data)
      tables = data[:split].map do |name, split|
        render_split_table(name, split, data[:weights][:files]) + render_canary(data[:canary]&.[](name))
      end
      <<~HTML
        <section id="split"><h2>Canary split: configured weights and who answered</h2>
        <p>#{render_weights_source(data[:weights])}</p>
        #{tables.join("\n")}</section>
      HTML
    end

    # Where the configured weights come from: the valid files, then what is wrong with the others.
    def render_weights_source(weights)
      dir = h(weights[:dir])
      if weights[:state] == 'absent'
        return "configured weights unknown: no &lt;virtual service&gt;.json files in #{dir}."
      end

      valid = weights[:files].select { |_, file| file[:state] == 'ok' }.keys
      text = valid.empty? ? '' : "Configured weights from #{dir}: #{h(valid.join(', '))}."
      return text if weights[:state] == 'ok'

      unknown = valid.empty? ? 'configured weights unknown: ' : ''
      %(#{text}#{valid.empty? ? '' : ' '}<span class="warn">#{unknown}invalid weights in #{dir}: #{h(weights[:error])}</span>)
    end

    # files: the weights directory's files and their states, to say why weights are unknown.
    def render_split_table(name, split, files)
      rows = split[:targets].map do |service, target|
        <<~HTML.chomp
          <tr><td>#{h(service)}</td><td class="num">#{target[:weight].nil? ? '-' : h(target[:weight])}</td>
          <td class="num">#{percent(target[:configured_percent])}</td><td>#{bar(target[:configured_percent], 'configured')}</td>
          <td class="num">#{h(target[:count])}</td><td class="num">#{percent(target[:observed_percent])}</td><td>#{bar(target[:observed_percent])}</td></tr>
        HTML
      end
      rows << '<tr><td colspan="7" class="muted">no answers yet</td></tr>' if rows.empty?
      note = ''
      unless split[:configured]
        file = "#{name}.json"
        why = files.key?(file) ? "#{file} is invalid" : "no #{file}"
        note = %( <span class="muted">(configured weights unknown: #{h(why)})</span>)
      end
      <<~HTML
        <h3 id="split-#{h(name)}">#{h(name)}#{note}</h3>
        <table><tr><th>service</th><th>weight</th><th>configured</th><th></th><th>answers</th><th>observed</th><th></th></tr>
        #{rows.join("\n")}</table>
        <p>Sample size: the last #{h(split[:samples])} answers (window #{h(split[:window])}).</p>
      HTML
    end

    # The canary's live step and the verdict that put it there (nothing when there is no canary).
    def render_canary(status)
      return '' if status.nil?

      css = { 'promote' => 'ok', 'roll back' => 'down', 'wait' => 'warn' }.fetch(status[:verdict], 'muted')
      reason = status[:reason] ? " (#{h(status[:reason])})" : ''
      %(<p class="canary">Canary step #{h(status[:step])}; last verdict: <span class="#{css}">#{h(status[:verdict])}</span>#{reason}</p>\n)
    end

    def render_backend(name, result)
      if result[:ok]
        body = result[:body]
        rows = %w[service version message pod zone].map do |key|
          "<tr><th>#{h(key)}</th><td>#{h(body[key])}</td></tr>"
        end
        <<~HTML
          <section id="#{h(name)}"><h2>#{h(name)} <span class="ok">ok</span></h2>
          <p>Answered by #{h(body['service'])} version #{h(body['version'])} in #{h(result[:elapsed_ms])} ms.</p>
          <table>#{rows.join}<tr><th>latency</th><td>#{h(result[:elapsed_ms])} ms</td></tr></table></section>
        HTML
      else
        <<~HTML
          <section id="#{h(name)}"><h2>#{h(name)} <span class="down">unavailable</span></h2>
          <p>Reason: #{h(result[:error])} (after #{h(result[:elapsed_ms])} ms)</p></section>
        HTML
      end
    end

    def render_versions(data)
      rows = data[:nodejs_versions].map do |version, count|
        "<tr><td>#{h(version)}</td><td class=\"num\">#{count}</td><td class=\"num\">#{data[:nodejs_versions_percent][version]}%</td></tr>"
      end
      <<~HTML
        <section id="tally"><h2>Node.js versions, last #{data[:samples]} of #{data[:window]} requests</h2>
        <table><tr><th>version</th><th>count</th><th>share</th></tr>#{rows.join}</table></section>
      HTML
    end

    def render_server(server)
      capacity = server[:capacity] || {}
      queue = server[:listen_queue]
      flag = ->(n) { n.to_i.zero? ? h(n) : %(<span class="warn">#{h(n)}</span>) }
      <<~HTML
        <section id="server"><h2>This frontend</h2>
        <p>Requests served #{h(server[:requests])}, in flight #{h(server[:in_flight])},
        errors #{flag.call(server[:errors])}, refused #{flag.call(server[:refused])}#{queue ? ", accept queue #{h(queue[:queued])} of #{h(queue[:limit])}" : ''}.</p>
        <p class="muted">Capacity: #{h(capacity[:threads])} requests at once, #{h(capacity[:backlog])} more connections waiting
        in the listen queue: #{h(capacity[:concurrent_requests])} concurrent requests without refusal.</p></section>
      HTML
    end

    def bar(percent, css = nil)
      return '' if percent.nil?

      %(<span class="bar#{css ? " #{css}" : ''}" style="width: #{(percent * 1.5).round}px"></span>)
    end

    def percent(value)
      value.nil? ? '-' : "#{value}%"
    end

    def h(value)
      CGI.escapeHTML(value.to_s)
    end
  end
end
